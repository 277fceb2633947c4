/* PS3.15 Annex E Table E.1-1, Basic Profile column, as a table. Generated
 * once from tests/dicom/annex_e_basic.tsv (the test's oracle). Compound
 * actions resolve to the one that keeps an IOD valid: X/Z -> Z, X/D, Z/D and
 * X/Z/D -> D (a dummy; for a sequence: its items cleaned recursively),
 * X/Z/U* -> S (keep the sequence, clean its items: its UIDs are replaced).
 * Overlay groups (60xx) go whole: an overlay without its data is invalid. */
#include <stddef.h>

#include "dicom_internal.h"

static const cs_dicom_deid_rule rules[] = {
    {0x00080050, 0xFFFFFFFF, 'Z'}, /* Accession Number (Z) */
    {0x00184000, 0xFFFFFFFF, 'X'}, /* Acquisition Comments (X) */
    {0x00400555, 0xFFFFFFFF, 'Z'}, /* Acquisition Context Sequence (X/Z) */
    {0x00080022, 0xFFFFFFFF, 'Z'}, /* Acquisition Date (X/Z) */
    {0x0008002A, 0xFFFFFFFF, 'D'}, /* Acquisition DateTime (X/Z/D) */
    {0x00181400, 0xFFFFFFFF, 'D'}, /* Acquisition Device Processing Description (X/D) */
    {0x001811BB, 0xFFFFFFFF, 'D'}, /* Acquisition Field Of View Label (D) */
    {0x00189424, 0xFFFFFFFF, 'X'}, /* Acquisition Protocol Description (X) */
    {0x00080032, 0xFFFFFFFF, 'Z'}, /* Acquisition Time (X/Z) */
    {0x00404035, 0xFFFFFFFF, 'X'}, /* Actual Human Performers Sequence (X) */
    {0x001021B0, 0xFFFFFFFF, 'X'}, /* Additional Patient History (X) */
    {0x0040A353, 0xFFFFFFFF, 'X'}, /* Address (Trial) (X) */
    {0x00380010, 0xFFFFFFFF, 'X'}, /* Admission ID (X) */
    {0x00380020, 0xFFFFFFFF, 'X'}, /* Admitting Date (X) */
    {0x00081084, 0xFFFFFFFF, 'X'}, /* Admitting Diagnoses Code Sequence (X) */
    {0x00081080, 0xFFFFFFFF, 'X'}, /* Admitting Diagnoses Description (X) */
    {0x00380021, 0xFFFFFFFF, 'X'}, /* Admitting Time (X) */
    {0x00001000, 0xFFFFFFFF, 'X'}, /* Affected SOP Instance UID (X) */
    {0x00102110, 0xFFFFFFFF, 'X'}, /* Allergies (X) */
    {0x40000010, 0xFFFFFFFF, 'X'}, /* Arbitrary (X) */
    {0x0040A078, 0xFFFFFFFF, 'X'}, /* Author Observer Sequence (X) */
    {0x22000005, 0xFFFFFFFF, 'Z'}, /* Barcode Value (X/Z) */
    {0x300A00C3, 0xFFFFFFFF, 'X'}, /* Beam Description (X) */
    {0x300A00DD, 0xFFFFFFFF, 'X'}, /* Bolus Description (X) */
    {0x00101081, 0xFFFFFFFF, 'X'}, /* Branch of Service (X) */
    {0x0016004D, 0xFFFFFFFF, 'X'}, /* Camera Owner Name (X) */
    {0x00181007, 0xFFFFFFFF, 'X'}, /* Cassette ID (X) */
    {0x00120060, 0xFFFFFFFF, 'Z'}, /* Clinical Trial Coordinating Center Name (Z) */
    {0x00120082, 0xFFFFFFFF,
     'X'}, /* Clinical Trial Protocol Ethics Committee Approval Number (X) */
    {0x00120081, 0xFFFFFFFF, 'D'}, /* Clinical Trial Protocol Ethics Committee Name (D) */
    {0x00120020, 0xFFFFFFFF, 'D'}, /* Clinical Trial Protocol ID (D) */
    {0x00120021, 0xFFFFFFFF, 'Z'}, /* Clinical Trial Protocol Name (Z) */
    {0x00120072, 0xFFFFFFFF, 'X'}, /* Clinical Trial Series Description (X) */
    {0x00120071, 0xFFFFFFFF, 'X'}, /* Clinical Trial Series ID (X) */
    {0x00120030, 0xFFFFFFFF, 'Z'}, /* Clinical Trial Site ID (Z) */
    {0x00120031, 0xFFFFFFFF, 'Z'}, /* Clinical Trial Site Name (Z) */
    {0x00120010, 0xFFFFFFFF, 'D'}, /* Clinical Trial Sponsor Name (D) */
    {0x00120040, 0xFFFFFFFF, 'D'}, /* Clinical Trial Subject ID (D) */
    {0x00120042, 0xFFFFFFFF, 'D'}, /* Clinical Trial Subject Reading ID (D) */
    {0x00120051, 0xFFFFFFFF, 'X'}, /* Clinical Trial Time Point Description (X) */
    {0x00120050, 0xFFFFFFFF, 'Z'}, /* Clinical Trial Time Point ID (Z) */
    {0x00400310, 0xFFFFFFFF, 'X'}, /* Comments on Radiation Dose (X) */
    {0x00400280, 0xFFFFFFFF, 'X'}, /* Comments on the Performed Procedure Step (X) */
    {0x300A02EB, 0xFFFFFFFF, 'X'}, /* Compensator Description (X) */
    {0x00209161, 0xFFFFFFFF, 'U'}, /* Concatenation UID (U) */
    {0x3010000F, 0xFFFFFFFF, 'Z'}, /* Conceptual Volume Combination Description (Z) */
    {0x30100017, 0xFFFFFFFF, 'Z'}, /* Conceptual Volume Description (Z) */
    {0x30100006, 0xFFFFFFFF, 'U'}, /* Conceptual Volume UID (U) */
    {0x00403001, 0xFFFFFFFF, 'X'}, /* Confidentiality Constraint on Patient Data Description (X) */
    {0x30100013, 0xFFFFFFFF, 'U'}, /* Constituent Conceptual Volume UID (U) */
    {0x0008009C, 0xFFFFFFFF, 'Z'}, /* Consulting Physician's Name (Z) */
    {0x0008009D, 0xFFFFFFFF, 'X'}, /* Consulting Physician Identification Sequence (X) */
    {0x0050001B, 0xFFFFFFFF, 'X'}, /* Container Component ID (X) */
    {0x0040051A, 0xFFFFFFFF, 'X'}, /* Container Description (X) */
    {0x00400512, 0xFFFFFFFF, 'D'}, /* Container Identifier (D) */
    {0x00700086, 0xFFFFFFFF, 'X'}, /* Content Creator's Identification Code Sequence (X) */
    {0x00700084, 0xFFFFFFFF, 'D'}, /* Content Creator's Name (Z/D) */
    {0x00080023, 0xFFFFFFFF, 'D'}, /* Content Date (Z/D) */
    {0x0040A730, 0xFFFFFFFF, 'D'}, /* Content Sequence (D) */
    {0x00080033, 0xFFFFFFFF, 'D'}, /* Content Time (Z/D) */
    {0x00180010, 0xFFFFFFFF, 'D'}, /* Contrast/Bolus Agent (Z/D) */
    {0x0018A003, 0xFFFFFFFF, 'X'}, /* Contribution Description (X) */
    {0x00102150, 0xFFFFFFFF, 'X'}, /* Country of Residence (X) */
    {0x0040A307, 0xFFFFFFFF, 'X'}, /* Current Observer (Trial) (X) */
    {0x00380300, 0xFFFFFFFF, 'X'}, /* Current Patient Location (X) */
    {0x50000000, 0xFF000000, 'X'}, /* Curve Data (X) */
    {0x00080025, 0xFFFFFFFF, 'X'}, /* Curve Date (X) */
    {0x00080035, 0xFFFFFFFF, 'X'}, /* Curve Time (X) */
    {0x0040A07C, 0xFFFFFFFF, 'X'}, /* Custodial Organization Sequence (X) */
    {0xFFFCFFFC, 0xFFFFFFFF, 'X'}, /* Data Set Trailing Padding (X) */
    {0x0018937F, 0xFFFFFFFF, 'X'}, /* Decomposition Description (X) */
    {0x00082111, 0xFFFFFFFF, 'X'}, /* Derivation Description (X) */
    {0x0018700A, 0xFFFFFFFF, 'D'}, /* Detector ID (X/D) */
    {0x3010001B, 0xFFFFFFFF, 'Z'}, /* Device Alternate Identifier (Z) */
    {0x00500020, 0xFFFFFFFF, 'X'}, /* Device Description (X) */
    {0x3010002D, 0xFFFFFFFF, 'D'}, /* Device Label (D) */
    {0x00181000, 0xFFFFFFFF, 'D'}, /* Device Serial Number (X/Z/D) */
    {0x0016004B, 0xFFFFFFFF, 'X'}, /* Device Setting Description (X) */
    {0x00181002, 0xFFFFFFFF, 'U'}, /* Device UID (U) */
    {0xFFFAFFFA, 0xFFFFFFFF, 'X'}, /* Digital Signatures Sequence (X) */
    {0x04000100, 0xFFFFFFFF, 'U'}, /* Digital Signature UID (U) */
    {0x00209164, 0xFFFFFFFF, 'U'}, /* Dimension Organization UID (U) */
    {0x00380040, 0xFFFFFFFF, 'X'}, /* Discharge Diagnosis Description (X) */
    {0x4008011A, 0xFFFFFFFF, 'X'}, /* Distribution Address (X) */
    {0x40080119, 0xFFFFFFFF, 'X'}, /* Distribution Name (X) */
    {0x300A0016, 0xFFFFFFFF, 'X'}, /* Dose Reference Description (X) */
    {0x300A0013, 0xFFFFFFFF, 'U'}, /* Dose Reference UID (U) */
    {0x3010006E, 0xFFFFFFFF, 'U'}, /* Dosimetric Objective UID (U) */
    {0x00189517, 0xFFFFFFFF, 'D'}, /* End Acquisition DateTime (X/D) */
    {0x30100037, 0xFFFFFFFF, 'X'}, /* Entity Description (X) */
    {0x30100035, 0xFFFFFFFF, 'D'}, /* Entity Label (D) */
    {0x30100038, 0xFFFFFFFF, 'D'}, /* Entity Long Label (D) */
    {0x30100036, 0xFFFFFFFF, 'X'}, /* Entity Name (X) */
    {0x300A0676, 0xFFFFFFFF, 'X'}, /* Equipment Frame of Reference Description (X) */
    {0x00102160, 0xFFFFFFFF, 'X'}, /* Ethnic Group (X) */
    {0x00404011, 0xFFFFFFFF, 'X'}, /* Expected Completion DateTime (X) */
    {0x00080058, 0xFFFFFFFF, 'U'}, /* Failed SOP Instance UID List (U) */
    {0x0070031A, 0xFFFFFFFF, 'U'}, /* Fiducial UID (U) */
    {0x00402017, 0xFFFFFFFF, 'Z'}, /* Filler Order Number / Imaging Service Request (Z) */
    {0x30080054, 0xFFFFFFFF, 'D'}, /* First Treatment Date (X/D) */
    {0x300A0196, 0xFFFFFFFF, 'X'}, /* Fixation Device Description (X) */
    {0x00340002, 0xFFFFFFFF, 'D'}, /* Flow Identifier (D) */
    {0x00340001, 0xFFFFFFFF, 'D'}, /* Flow Identifier Sequence (D) */
    {0x3010007F, 0xFFFFFFFF, 'Z'}, /* Fractionation Notes (Z) */
    {0x300A0072, 0xFFFFFFFF, 'X'}, /* Fraction Group Description (X) */
    {0x00209158, 0xFFFFFFFF, 'X'}, /* Frame Comments (X) */
    {0x00200052, 0xFFFFFFFF, 'U'}, /* Frame of Reference UID (U) */
    {0x00340007, 0xFFFFFFFF, 'D'}, /* Frame Origin Timestamp (D) */
    {0x00181008, 0xFFFFFFFF, 'X'}, /* Gantry ID (X) */
    {0x00181005, 0xFFFFFFFF, 'X'}, /* Generator ID (X) */
    {0x00160076, 0xFFFFFFFF, 'X'}, /* GPS Altitude (X) */
    {0x00160075, 0xFFFFFFFF, 'X'}, /* GPS Altitude Ref (X) */
    {0x0016008C, 0xFFFFFFFF, 'X'}, /* GPS Area Information (X) */
    {0x0016008D, 0xFFFFFFFF, 'X'}, /* GPS Date Stamp (X) */
    {0x00160088, 0xFFFFFFFF, 'X'}, /* GPS Dest Bearing (X) */
    {0x00160087, 0xFFFFFFFF, 'X'}, /* GPS Dest Bearing Ref (X) */
    {0x0016008A, 0xFFFFFFFF, 'X'}, /* GPS Dest Distance (X) */
    {0x00160089, 0xFFFFFFFF, 'X'}, /* GPS Dest Distance Ref (X) */
    {0x00160084, 0xFFFFFFFF, 'X'}, /* GPS Dest Latitude (X) */
    {0x00160083, 0xFFFFFFFF, 'X'}, /* GPS Dest Latitude Ref (X) */
    {0x00160086, 0xFFFFFFFF, 'X'}, /* GPS Dest Longitude (X) */
    {0x00160085, 0xFFFFFFFF, 'X'}, /* GPS Dest Longitude Ref (X) */
    {0x0016008E, 0xFFFFFFFF, 'X'}, /* GPS Differential (X) */
    {0x0016007B, 0xFFFFFFFF, 'X'}, /* GPS DOP (X) */
    {0x00160081, 0xFFFFFFFF, 'X'}, /* GPS Img Direction (X) */
    {0x00160080, 0xFFFFFFFF, 'X'}, /* GPS Img Direction Ref (X) */
    {0x00160072, 0xFFFFFFFF, 'X'}, /* GPS Latitude (X) */
    {0x00160071, 0xFFFFFFFF, 'X'}, /* GPS Latitude Ref (X) */
    {0x00160074, 0xFFFFFFFF, 'X'}, /* GPS Longitude (X) */
    {0x00160073, 0xFFFFFFFF, 'X'}, /* GPS Longitude Ref (X) */
    {0x00160082, 0xFFFFFFFF, 'X'}, /* GPS Map Datum (X) */
    {0x0016007A, 0xFFFFFFFF, 'X'}, /* GPS Measure Mode (X) */
    {0x0016008B, 0xFFFFFFFF, 'X'}, /* GPS Processing Method (X) */
    {0x00160078, 0xFFFFFFFF, 'X'}, /* GPS Satellites (X) */
    {0x0016007D, 0xFFFFFFFF, 'X'}, /* GPS Speed (X) */
    {0x0016007C, 0xFFFFFFFF, 'X'}, /* GPS Speed Ref (X) */
    {0x00160079, 0xFFFFFFFF, 'X'}, /* GPS Status (X) */
    {0x00160077, 0xFFFFFFFF, 'X'}, /* GPS Time Stamp (X) */
    {0x0016007F, 0xFFFFFFFF, 'X'}, /* GPS Track (X) */
    {0x0016007E, 0xFFFFFFFF, 'X'}, /* GPS Track Ref (X) */
    {0x00160070, 0xFFFFFFFF, 'X'}, /* GPS Version ID (X) */
    {0x00700001, 0xFFFFFFFF, 'D'}, /* Graphic Annotation Sequence (D) */
    {0x00404037, 0xFFFFFFFF, 'X'}, /* Human Performer's Name (X) */
    {0x00404036, 0xFFFFFFFF, 'X'}, /* Human Performer's Organization (X) */
    {0x00880200, 0xFFFFFFFF, 'X'}, /* Icon Image Sequence (X) */
    {0x00084000, 0xFFFFFFFF, 'X'}, /* Identifying Comments (X) */
    {0x00204000, 0xFFFFFFFF, 'X'}, /* Image Comments (X) */
    {0x00284000, 0xFFFFFFFF, 'X'}, /* Image Presentation Comments (X) */
    {0x00402400, 0xFFFFFFFF, 'X'}, /* Imaging Service Request Comments (X) */
    {0x003A0314, 0xFFFFFFFF, 'D'}, /* Impedance Measurement DateTime (D) */
    {0x40080300, 0xFFFFFFFF, 'X'}, /* Impressions (X) */
    {0x00080015, 0xFFFFFFFF, 'X'}, /* Instance Coercion DateTime (X) */
    {0x00080014, 0xFFFFFFFF, 'U'}, /* Instance Creator UID (U) */
    {0x04000600, 0xFFFFFFFF, 'X'}, /* Instance Origin Status (X) */
    {0x00080081, 0xFFFFFFFF, 'X'}, /* Institution Address (X) */
    {0x00081040, 0xFFFFFFFF, 'X'}, /* Institutional Department Name (X) */
    {0x00081041, 0xFFFFFFFF, 'X'}, /* Institutional Department Type Code Sequence (X) */
    {0x00080082, 0xFFFFFFFF, 'D'}, /* Institution Code Sequence (X/Z/D) */
    {0x00080080, 0xFFFFFFFF, 'D'}, /* Institution Name (X/Z/D) */
    {0x00101050, 0xFFFFFFFF, 'X'}, /* Insurance Plan Identification (X) */
    {0x3010004D, 0xFFFFFFFF, 'D'}, /* Intended Phase End Date (X/D) */
    {0x3010004C, 0xFFFFFFFF, 'D'}, /* Intended Phase Start Date (X/D) */
    {0x00401011, 0xFFFFFFFF, 'X'}, /* Intended Recipients of Results Identification Sequence (X) */
    {0x300A0741, 0xFFFFFFFF, 'D'}, /* Interlock DateTime (D) */
    {0x300A0742, 0xFFFFFFFF, 'D'}, /* Interlock Description (D) */
    {0x300A0783, 0xFFFFFFFF, 'D'}, /* Interlock Origin Description (D) */
    {0x40080111, 0xFFFFFFFF, 'X'}, /* Interpretation Approver Sequence (X) */
    {0x4008010C, 0xFFFFFFFF, 'X'}, /* Interpretation Author (X) */
    {0x40080115, 0xFFFFFFFF, 'X'}, /* Interpretation Diagnosis Description (X) */
    {0x40080202, 0xFFFFFFFF, 'X'}, /* Interpretation ID Issuer (X) */
    {0x40080102, 0xFFFFFFFF, 'X'}, /* Interpretation Recorder (X) */
    {0x4008010B, 0xFFFFFFFF, 'X'}, /* Interpretation Text (X) */
    {0x4008010A, 0xFFFFFFFF, 'X'}, /* Interpretation Transcriber (X) */
    {0x00083010, 0xFFFFFFFF, 'U'}, /* Irradiation Event UID (U) */
    {0x00380011, 0xFFFFFFFF, 'X'}, /* Issuer of Admission ID (X) */
    {0x00380014, 0xFFFFFFFF, 'X'}, /* Issuer of Admission ID Sequence (X) */
    {0x00100021, 0xFFFFFFFF, 'X'}, /* Issuer of Patient ID (X) */
    {0x00380061, 0xFFFFFFFF, 'X'}, /* Issuer of Service Episode ID (X) */
    {0x00380064, 0xFFFFFFFF, 'X'}, /* Issuer of Service Episode ID Sequence (X) */
    {0x00400513, 0xFFFFFFFF, 'Z'}, /* Issuer of the Container Identifier Sequence (Z) */
    {0x00400562, 0xFFFFFFFF, 'Z'}, /* Issuer of the Specimen Identifier Sequence (Z) */
    {0x22000002, 0xFFFFFFFF, 'Z'}, /* Label Text (X/Z) */
    {0x00281214, 0xFFFFFFFF, 'U'}, /* Large Palette Color Lookup Table UID (U) */
    {0x001021D0, 0xFFFFFFFF, 'X'}, /* Last Menstrual Date (X) */
    {0x0016004F, 0xFFFFFFFF, 'X'}, /* Lens Make (X) */
    {0x00160050, 0xFFFFFFFF, 'X'}, /* Lens Model (X) */
    {0x00160051, 0xFFFFFFFF, 'X'}, /* Lens Serial Number (X) */
    {0x0016004E, 0xFFFFFFFF, 'X'}, /* Lens Specification (X) */
    {0x00500021, 0xFFFFFFFF, 'X'}, /* Long Device Description (X) */
    {0x04000404, 0xFFFFFFFF, 'X'}, /* MAC (X) */
    {0x0016002B, 0xFFFFFFFF, 'X'}, /* Maker Note (X) */
    {0x0018100B, 0xFFFFFFFF, 'U'}, /* Manufacturer's Device Class UID (U) */
    {0x30100043, 0xFFFFFFFF, 'Z'}, /* Manufacturer's Device Identifier (Z) */
    {0x00020003, 0xFFFFFFFF, 'U'}, /* Media Storage SOP Instance UID (U) */
    {0x00102000, 0xFFFFFFFF, 'X'}, /* Medical Alerts (X) */
    {0x00101090, 0xFFFFFFFF, 'X'}, /* Medical Record Locator (X) */
    {0x00101080, 0xFFFFFFFF, 'X'}, /* Military Rank (X) */
    {0x04000550, 0xFFFFFFFF, 'X'}, /* Modified Attributes Sequence (X) */
    {0x00203406, 0xFFFFFFFF, 'X'}, /* Modified Image Description (X) */
    {0x00203401, 0xFFFFFFFF, 'X'}, /* Modifying Device ID (X) */
    {0x30080056, 0xFFFFFFFF, 'D'}, /* Most Recent Treatment Date (X/D) */
    {0x0018937B, 0xFFFFFFFF, 'X'}, /* Multi-energy Acquisition Description (X) */
    {0x003A0310, 0xFFFFFFFF, 'U'}, /* Multiplex Group UID (U) */
    {0x00081060, 0xFFFFFFFF, 'X'}, /* Name of Physician(s) Reading Study (X) */
    {0x00401010, 0xFFFFFFFF, 'X'}, /* Names of Intended Recipients of Results (X) */
    {0x04000551, 0xFFFFFFFF, 'X'}, /* Nonconforming Modified Attributes Sequence (X) */
    {0x04000552, 0xFFFFFFFF, 'X'}, /* Nonconforming Data Element Value (X) */
    {0x0040A192, 0xFFFFFFFF, 'X'}, /* Observation Date (Trial) (X) */
    {0x0040A402, 0xFFFFFFFF, 'U'}, /* Observation Subject UID (Trial) (U) */
    {0x0040A193, 0xFFFFFFFF, 'X'}, /* Observation Time (Trial) (X) */
    {0x0040A171, 0xFFFFFFFF, 'U'}, /* Observation UID (U) */
    {0x00102180, 0xFFFFFFFF, 'X'}, /* Occupation (X) */
    {0x00081072, 0xFFFFFFFF, 'D'}, /* Operator Identification Sequence (X/D) */
    {0x00081070, 0xFFFFFFFF, 'D'}, /* Operators' Name (X/Z/D) */
    {0x00402010, 0xFFFFFFFF, 'X'}, /* Order Callback Phone Number (X) */
    {0x00402011, 0xFFFFFFFF, 'X'}, /* Order Callback Telecom Information (X) */
    {0x00402008, 0xFFFFFFFF, 'X'}, /* Order Entered By (X) */
    {0x00402009, 0xFFFFFFFF, 'X'}, /* Order Enterer's Location (X) */
    {0x04000561, 0xFFFFFFFF, 'X'}, /* Original Attributes Sequence (X) */
    {0x00101000, 0xFFFFFFFF, 'X'}, /* Other Patient IDs (X) */
    {0x00101002, 0xFFFFFFFF, 'X'}, /* Other Patient IDs Sequence (X) */
    {0x00101001, 0xFFFFFFFF, 'X'}, /* Other Patient Names (X) */
    {0x60004000, 0xFF00FFFF, 'X'}, /* Overlay Comments (X) */
    {0x60003000, 0xFF00FFFF, 'X'}, /* Overlay Data (X) */
    {0x00080024, 0xFFFFFFFF, 'X'}, /* Overlay Date (X) */
    {0x00080034, 0xFFFFFFFF, 'X'}, /* Overlay Time (X) */
    {0x300A0760, 0xFFFFFFFF, 'D'}, /* Override DateTime (D) */
    {0x00281199, 0xFFFFFFFF, 'U'}, /* Palette Color Lookup Table UID (U) */
    {0x0040A07A, 0xFFFFFFFF, 'X'}, /* Participant Sequence (X) */
    {0x00101040, 0xFFFFFFFF, 'X'}, /* Patient's Address (X) */
    {0x00101010, 0xFFFFFFFF, 'X'}, /* Patient's Age (X) */
    {0x00100030, 0xFFFFFFFF, 'Z'}, /* Patient's Birth Date (Z) */
    {0x00101005, 0xFFFFFFFF, 'X'}, /* Patient's Birth Name (X) */
    {0x00100032, 0xFFFFFFFF, 'X'}, /* Patient's Birth Time (X) */
    {0x00380400, 0xFFFFFFFF, 'X'}, /* Patient's Institution Residence (X) */
    {0x00100050, 0xFFFFFFFF, 'X'}, /* Patient's Insurance Plan Code Sequence (X) */
    {0x00101060, 0xFFFFFFFF, 'X'}, /* Patient's Mother's Birth Name (X) */
    {0x00100010, 0xFFFFFFFF, 'Z'}, /* Patient's Name (Z) */
    {0x00100101, 0xFFFFFFFF, 'X'}, /* Patient's Primary Language Code Sequence (X) */
    {0x00100102, 0xFFFFFFFF, 'X'}, /* Patient's Primary Language Modifier Code Sequence (X) */
    {0x001021F0, 0xFFFFFFFF, 'X'}, /* Patient's Religious Preference (X) */
    {0x00100040, 0xFFFFFFFF, 'Z'}, /* Patient's Sex (Z) */
    {0x00102203, 0xFFFFFFFF, 'Z'}, /* Patient's Sex Neutered (X/Z) */
    {0x00101020, 0xFFFFFFFF, 'X'}, /* Patient's Size (X) */
    {0x00102155, 0xFFFFFFFF, 'X'}, /* Patient's Telecom Information (X) */
    {0x00102154, 0xFFFFFFFF, 'X'}, /* Patient's Telephone Numbers (X) */
    {0x00101030, 0xFFFFFFFF, 'X'}, /* Patient's Weight (X) */
    {0x00104000, 0xFFFFFFFF, 'X'}, /* Patient Comments (X) */
    {0x00100020, 0xFFFFFFFF, 'Z'}, /* Patient ID (Z) */
    {0x300A0650, 0xFFFFFFFF, 'U'}, /* Patient Setup UID (U) */
    {0x00380500, 0xFFFFFFFF, 'X'}, /* Patient State (X) */
    {0x00401004, 0xFFFFFFFF, 'X'}, /* Patient Transport Arrangements (X) */
    {0x00400243, 0xFFFFFFFF, 'X'}, /* Performed Location (X) */
    {0x00400254, 0xFFFFFFFF, 'X'}, /* Performed Procedure Step Description (X) */
    {0x00400250, 0xFFFFFFFF, 'X'}, /* Performed Procedure Step End Date (X) */
    {0x00404051, 0xFFFFFFFF, 'X'}, /* Performed Procedure Step End DateTime (X) */
    {0x00400251, 0xFFFFFFFF, 'X'}, /* Performed Procedure Step End Time (X) */
    {0x00400253, 0xFFFFFFFF, 'X'}, /* Performed Procedure Step ID (X) */
    {0x00400244, 0xFFFFFFFF, 'X'}, /* Performed Procedure Step Start Date (X) */
    {0x00404050, 0xFFFFFFFF, 'X'}, /* Performed Procedure Step Start DateTime (X) */
    {0x00400245, 0xFFFFFFFF, 'X'}, /* Performed Procedure Step Start Time (X) */
    {0x00400241, 0xFFFFFFFF, 'X'}, /* Performed Station AE Title (X) */
    {0x00404030, 0xFFFFFFFF, 'X'}, /* Performed Station Geographic Location Code Sequence (X) */
    {0x00400242, 0xFFFFFFFF, 'X'}, /* Performed Station Name (X) */
    {0x00404028, 0xFFFFFFFF, 'X'}, /* Performed Station Name Code Sequence (X) */
    {0x00081050, 0xFFFFFFFF, 'X'}, /* Performing Physician's Name (X) */
    {0x00081052, 0xFFFFFFFF, 'X'}, /* Performing Physician Identification Sequence (X) */
    {0x00401102, 0xFFFFFFFF, 'X'}, /* Person's Address (X) */
    {0x00401104, 0xFFFFFFFF, 'X'}, /* Person's Telecom Information (X) */
    {0x00401103, 0xFFFFFFFF, 'X'}, /* Person's Telephone Numbers (X) */
    {0x00401101, 0xFFFFFFFF, 'D'}, /* Person Identification Code Sequence (D) */
    {0x0040A123, 0xFFFFFFFF, 'D'}, /* Person Name (D) */
    {0x00081048, 0xFFFFFFFF, 'X'}, /* Physician(s) of Record (X) */
    {0x00081049, 0xFFFFFFFF, 'X'}, /* Physician(s) of Record Identification Sequence (X) */
    {0x00081062, 0xFFFFFFFF, 'X'}, /* Physician(s) Reading Study Identification Sequence (X) */
    {0x40080114, 0xFFFFFFFF, 'X'}, /* Physician Approving Interpretation (X) */
    {0x00402016, 0xFFFFFFFF, 'Z'}, /* Placer Order Number / Imaging Service Request (Z) */
    {0x00181004, 0xFFFFFFFF, 'X'}, /* Plate ID (X) */
    {0x001021C0, 0xFFFFFFFF, 'X'}, /* Pregnancy Status (X) */
    {0x00400012, 0xFFFFFFFF, 'X'}, /* Pre-Medication (X) */
    {0x300A000E, 0xFFFFFFFF, 'X'}, /* Prescription Description (X) */
    {0x3010007B, 0xFFFFFFFF, 'Z'}, /* Prescription Notes (Z) */
    {0x30100081, 0xFFFFFFFF, 'Z'}, /* Prescription Notes Sequence (Z) */
    {0x00701101, 0xFFFFFFFF, 'U'}, /* Presentation Display Collection UID (U) */
    {0x00701102, 0xFFFFFFFF, 'U'}, /* Presentation Sequence Collection UID (U) */
    {0x30100061, 0xFFFFFFFF, 'X'}, /* Prior Treatment Dose Description (X) */
    {0x00404052, 0xFFFFFFFF, 'X'}, /* Procedure Step Cancellation DateTime (X) */
    {0x00181030, 0xFFFFFFFF, 'D'}, /* Protocol Name (X/D) */
    {0x300A0619, 0xFFFFFFFF, 'D'}, /* Radiation Dose Identification Label (D) */
    {0x300A0623, 0xFFFFFFFF, 'D'}, /* Radiation Dose In-Vivo Measurement Label (D) */
    {0x300A067D, 0xFFFFFFFF, 'Z'}, /* Radiation Generation Mode Description (Z) */
    {0x300A067C, 0xFFFFFFFF, 'D'}, /* Radiation Generation Mode Label (D) */
    {0x300C0113, 0xFFFFFFFF, 'X'}, /* Reason for Omission Description (X) */
    {0x0040100A, 0xFFFFFFFF, 'X'}, /* Reason for Requested Procedure Code Sequence (X) */
    {0x00321030, 0xFFFFFFFF, 'X'}, /* Reason for Study (X) */
    {0x3010005C, 0xFFFFFFFF, 'Z'}, /* Reason for Superseding (Z) */
    {0x00402001, 0xFFFFFFFF, 'X'}, /* Reason for the Imaging Service Request (X) */
    {0x00401002, 0xFFFFFFFF, 'X'}, /* Reason for the Requested Procedure (X) */
    {0x00321066, 0xFFFFFFFF, 'X'}, /* Reason for Visit (X) */
    {0x00321067, 0xFFFFFFFF, 'X'}, /* Reason for Visit Code Sequence (X) */
    {0x300A073A, 0xFFFFFFFF, 'D'}, /* Recorded RT Control Point DateTime (D) */
    {0x3010000B, 0xFFFFFFFF, 'U'}, /* Referenced Conceptual Volume UID (U) */
    {0x04000402, 0xFFFFFFFF, 'X'}, /* Referenced Digital Signature Sequence (X) */
    {0x300A0083, 0xFFFFFFFF, 'U'}, /* Referenced Dose Reference UID (U) */
    {0x3010006F, 0xFFFFFFFF, 'U'}, /* Referenced Dosimetric Objective UID (U) */
    {0x30100031, 0xFFFFFFFF, 'U'}, /* Referenced Fiducials UID (U) */
    {0x30060024, 0xFFFFFFFF, 'U'}, /* Referenced Frame of Reference UID (U) */
    {0x00404023, 0xFFFFFFFF,
     'U'}, /* Referenced General Purpose Scheduled Procedure Step Transaction UID (U) */
    {0x00081140, 0xFFFFFFFF, 'S'}, /* Referenced Image Sequence (X/Z/U*) */
    {0x0040A172, 0xFFFFFFFF, 'U'}, /* Referenced Observation UID (Trial) (U) */
    {0x00380004, 0xFFFFFFFF, 'X'}, /* Referenced Patient Alias Sequence (X) */
    {0x00101100, 0xFFFFFFFF, 'X'}, /* Referenced Patient Photo Sequence (X) */
    {0x00081120, 0xFFFFFFFF, 'X'}, /* Referenced Patient Sequence (X) */
    {0x00081111, 0xFFFFFFFF, 'D'}, /* Referenced Performed Procedure Step Sequence (X/Z/D) */
    {0x04000403, 0xFFFFFFFF, 'X'}, /* Referenced SOP Instance MAC Sequence (X) */
    {0x00081155, 0xFFFFFFFF, 'U'}, /* Referenced SOP Instance UID (U) */
    {0x00041511, 0xFFFFFFFF, 'U'}, /* Referenced SOP Instance UID in File (U) */
    {0x00081110, 0xFFFFFFFF,
     'X'}, /* Referenced Study Sequence (X/Z): Type 3, an empty one is invalid */
    {0x00080092, 0xFFFFFFFF, 'X'}, /* Referring Physician's Address (X) */
    {0x00080090, 0xFFFFFFFF, 'Z'}, /* Referring Physician's Name (Z) */
    {0x00080094, 0xFFFFFFFF, 'X'}, /* Referring Physician's Telephone Numbers (X) */
    {0x00080096, 0xFFFFFFFF, 'X'}, /* Referring Physician Identification Sequence (X) */
    {0x00102152, 0xFFFFFFFF, 'X'}, /* Region of Residence (X) */
    {0x300600C2, 0xFFFFFFFF, 'U'}, /* Related Frame of Reference UID (U) */
    {0x00400275, 0xFFFFFFFF, 'X'}, /* Request Attributes Sequence (X) */
    {0x00321070, 0xFFFFFFFF, 'X'}, /* Requested Contrast Agent (X) */
    {0x00401400, 0xFFFFFFFF, 'X'}, /* Requested Procedure Comments (X) */
    {0x00321060, 0xFFFFFFFF, 'Z'}, /* Requested Procedure Description (X/Z) */
    {0x00401001, 0xFFFFFFFF, 'X'}, /* Requested Procedure ID (X) */
    {0x00401005, 0xFFFFFFFF, 'X'}, /* Requested Procedure Location (X) */
    {0x00189937, 0xFFFFFFFF, 'X'}, /* Requested Series Description (X) */
    {0x00001001, 0xFFFFFFFF, 'U'}, /* Requested SOP Instance UID (U) */
    {0x00321032, 0xFFFFFFFF, 'X'}, /* Requesting Physician (X) */
    {0x00321033, 0xFFFFFFFF, 'X'}, /* Requesting Service (X) */
    {0x00189185, 0xFFFFFFFF, 'X'}, /* Respiratory Motion Compensation Technique Description (X) */
    {0x00102299, 0xFFFFFFFF, 'X'}, /* Responsible Organization (X) */
    {0x00102297, 0xFFFFFFFF, 'X'}, /* Responsible Person (X) */
    {0x40084000, 0xFFFFFFFF, 'X'}, /* Results Comments (X) */
    {0x40080118, 0xFFFFFFFF, 'X'}, /* Results Distribution List Sequence (X) */
    {0x40080042, 0xFFFFFFFF, 'X'}, /* Results ID Issuer (X) */
    {0x300E0008, 0xFFFFFFFF, 'Z'}, /* Reviewer Name (X/Z) */
    {0x30060028, 0xFFFFFFFF, 'X'}, /* ROI Description (X) */
    {0x30060038, 0xFFFFFFFF, 'X'}, /* ROI Generation Description (X) */
    {0x300600A6, 0xFFFFFFFF, 'Z'}, /* ROI Interpreter (Z) */
    {0x30060026, 0xFFFFFFFF, 'Z'}, /* ROI Name (Z) */
    {0x30060088, 0xFFFFFFFF, 'X'}, /* ROI Observation Description (X) */
    {0x30060085, 0xFFFFFFFF, 'X'}, /* ROI Observation Label (X) */
    {0x300A0615, 0xFFFFFFFF, 'Z'}, /* RT Accessory Device Slot ID (Z) */
    {0x300A0611, 0xFFFFFFFF, 'Z'}, /* RT Accessory Holder Slot ID (Z) */
    {0x3010005A, 0xFFFFFFFF, 'Z'}, /* RT Physician Intent Narrative (Z) */
    {0x300A0006, 0xFFFFFFFF, 'D'}, /* RT Plan Date (X/D) */
    {0x300A0004, 0xFFFFFFFF, 'X'}, /* RT Plan Description (X) */
    {0x300A0002, 0xFFFFFFFF, 'D'}, /* RT Plan Label (D) */
    {0x300A0003, 0xFFFFFFFF, 'X'}, /* RT Plan Name (X) */
    {0x300A0007, 0xFFFFFFFF, 'D'}, /* RT Plan Time (X/D) */
    {0x30100054, 0xFFFFFFFF, 'D'}, /* RT Prescription Label (D) */
    {0x300A062A, 0xFFFFFFFF, 'D'}, /* RT Tolerance Set Label (D) */
    {0x30100056, 0xFFFFFFFF, 'D'}, /* RT Treatment Approach Label (X/D) */
    {0x3010003B, 0xFFFFFFFF, 'U'}, /* RT Treatment Phase UID (U) */
    {0x00404034, 0xFFFFFFFF, 'X'}, /* Scheduled Human Performers Sequence (X) */
    {0x0038001E, 0xFFFFFFFF, 'X'}, /* Scheduled Patient Institution Residence (X) */
    {0x00400006, 0xFFFFFFFF, 'X'}, /* Scheduled Performing Physician's Name (X) */
    {0x0040000B, 0xFFFFFFFF, 'X'}, /* Scheduled Performing Physician Identification Sequence (X) */
    {0x00400007, 0xFFFFFFFF, 'X'}, /* Scheduled Procedure Step Description (X) */
    {0x00400004, 0xFFFFFFFF, 'X'}, /* Scheduled Procedure Step End Date (X) */
    {0x00400005, 0xFFFFFFFF, 'X'}, /* Scheduled Procedure Step End Time (X) */
    {0x00404008, 0xFFFFFFFF, 'X'}, /* Scheduled Procedure Step Expiration DateTime (X) */
    {0x00400009, 0xFFFFFFFF, 'X'}, /* Scheduled Procedure Step ID (X) */
    {0x00400011, 0xFFFFFFFF, 'X'}, /* Scheduled Procedure Step Location (X) */
    {0x00404010, 0xFFFFFFFF, 'X'}, /* Scheduled Procedure Step Modification DateTime (X) */
    {0x00400002, 0xFFFFFFFF, 'X'}, /* Scheduled Procedure Step Start Date (X) */
    {0x00404005, 0xFFFFFFFF, 'X'}, /* Scheduled Procedure Step Start DateTime (X) */
    {0x00400003, 0xFFFFFFFF, 'X'}, /* Scheduled Procedure Step Start Time (X) */
    {0x00400001, 0xFFFFFFFF, 'X'}, /* Scheduled Station AE Title (X) */
    {0x00404027, 0xFFFFFFFF, 'X'}, /* Scheduled Station Geographic Location Code Sequence (X) */
    {0x00400010, 0xFFFFFFFF, 'X'}, /* Scheduled Station Name (X) */
    {0x00404025, 0xFFFFFFFF, 'X'}, /* Scheduled Station Name Code Sequence (X) */
    {0x00321020, 0xFFFFFFFF, 'X'}, /* Scheduled Study Location (X) */
    {0x00321021, 0xFFFFFFFF, 'X'}, /* Scheduled Study Location AE Title (X) */
    {0x00080021, 0xFFFFFFFF, 'D'}, /* Series Date (X/D) */
    {0x0008103E, 0xFFFFFFFF, 'X'}, /* Series Description (X) */
    {0x0020000E, 0xFFFFFFFF, 'U'}, /* Series Instance UID (U) */
    {0x00080031, 0xFFFFFFFF, 'D'}, /* Series Time (X/D) */
    {0x00380062, 0xFFFFFFFF, 'X'}, /* Service Episode Description (X) */
    {0x00380060, 0xFFFFFFFF, 'X'}, /* Service Episode ID (X) */
    {0x300A01B2, 0xFFFFFFFF, 'X'}, /* Setup Technique Description (X) */
    {0x300A01A6, 0xFFFFFFFF, 'X'}, /* Shielding Device Description (X) */
    {0x004006FA, 0xFFFFFFFF, 'X'}, /* Slide Identifier (X) */
    {0x001021A0, 0xFFFFFFFF, 'X'}, /* Smoking Status (X) */
    {0x00080018, 0xFFFFFFFF, 'U'}, /* SOP Instance UID (U) */
    {0x30100015, 0xFFFFFFFF, 'U'}, /* Source Conceptual Volume UID (U) */
    {0x0018936A, 0xFFFFFFFF, 'D'}, /* Source End DateTime (D) */
    {0x00340005, 0xFFFFFFFF, 'D'}, /* Source Identifier (D) */
    {0x00082112, 0xFFFFFFFF, 'S'}, /* Source Image Sequence (X/Z/U*) */
    {0x300A0216, 0xFFFFFFFF, 'X'}, /* Source Manufacturer (X) */
    {0x30080105, 0xFFFFFFFF, 'Z'}, /* Source Serial Number (X/Z) */
    {0x00189369, 0xFFFFFFFF, 'D'}, /* Source Start DateTime (D) */
    {0x00380050, 0xFFFFFFFF, 'X'}, /* Special Needs (X) */
    {0x0040050A, 0xFFFFFFFF, 'X'}, /* Specimen Accession Number (X) */
    {0x00400602, 0xFFFFFFFF, 'X'}, /* Specimen Detailed Description (X) */
    {0x00400551, 0xFFFFFFFF, 'D'}, /* Specimen Identifier (D) */
    {0x00400610, 0xFFFFFFFF, 'Z'}, /* Specimen Preparation Sequence (Z) */
    {0x00400600, 0xFFFFFFFF, 'X'}, /* Specimen Short Description (X) */
    {0x00400554, 0xFFFFFFFF, 'U'}, /* Specimen UID (U) */
    {0x00189516, 0xFFFFFFFF, 'D'}, /* Start Acquisition DateTime (X/D) */
    {0x00081010, 0xFFFFFFFF, 'D'}, /* Station Name (X/Z/D) */
    {0x00880140, 0xFFFFFFFF, 'U'}, /* Storage Media File-set UID (U) */
    {0x30060008, 0xFFFFFFFF, 'Z'}, /* Structure Set Date (Z) */
    {0x30060006, 0xFFFFFFFF, 'X'}, /* Structure Set Description (X) */
    {0x30060002, 0xFFFFFFFF, 'D'}, /* Structure Set Label (D) */
    {0x30060004, 0xFFFFFFFF, 'X'}, /* Structure Set Name (X) */
    {0x30060009, 0xFFFFFFFF, 'D'}, /* Structure Set Time (X/D) */
    {0x00324000, 0xFFFFFFFF, 'X'}, /* Study Comments (X) */
    {0x00080020, 0xFFFFFFFF, 'Z'}, /* Study Date (Z) */
    {0x00081030, 0xFFFFFFFF, 'X'}, /* Study Description (X) */
    {0x00200010, 0xFFFFFFFF, 'Z'}, /* Study ID (Z) */
    {0x00320012, 0xFFFFFFFF, 'X'}, /* Study ID Issuer (X) */
    {0x0020000D, 0xFFFFFFFF, 'U'}, /* Study Instance UID (U) */
    {0x00080030, 0xFFFFFFFF, 'Z'}, /* Study Time (Z) */
    {0x00200200, 0xFFFFFFFF, 'U'}, /* Synchronization Frame of Reference UID (U) */
    {0x00182042, 0xFFFFFFFF, 'U'}, /* Target UID (U) */
    {0x0040A354, 0xFFFFFFFF, 'X'}, /* Telephone Number (Trial) (X) */
    {0x0040DB0D, 0xFFFFFFFF, 'U'}, /* Template Extension Creator UID (U) */
    {0x0040DB0C, 0xFFFFFFFF, 'U'}, /* Template Extension Organization UID (U) */
    {0x40004000, 0xFFFFFFFF, 'X'}, /* Text Comments (X) */
    {0x20300020, 0xFFFFFFFF, 'X'}, /* Text String (X) */
    {0x00080201, 0xFFFFFFFF, 'X'}, /* Timezone Offset From UTC (X) */
    {0x00880910, 0xFFFFFFFF, 'X'}, /* Topic Author (X) */
    {0x00880912, 0xFFFFFFFF, 'X'}, /* Topic Keywords (X) */
    {0x00880906, 0xFFFFFFFF, 'X'}, /* Topic Subject (X) */
    {0x00880904, 0xFFFFFFFF, 'X'}, /* Topic Title (X) */
    {0x00620021, 0xFFFFFFFF, 'U'}, /* Tracking UID (U) */
    {0x00081195, 0xFFFFFFFF, 'U'}, /* Transaction UID (U) */
    {0x00185011, 0xFFFFFFFF, 'X'}, /* Transducer Identification Sequence (X) */
    {0x30080250, 0xFFFFFFFF, 'D'}, /* Treatment Date (X/D) */
    {0x300A00B2, 0xFFFFFFFF, 'X'}, /* Treatment Machine Name (X) */
    {0x300A0608, 0xFFFFFFFF, 'D'}, /* Treatment Position Group Label (D) */
    {0x300A0609, 0xFFFFFFFF, 'U'}, /* Treatment Position Group UID (U) */
    {0x300A0700, 0xFFFFFFFF, 'U'}, /* Treatment Session UID (U) */
    {0x30100077, 0xFFFFFFFF, 'D'}, /* Treatment Site (D) */
    {0x3010007A, 0xFFFFFFFF, 'Z'}, /* Treatment Technique Notes (Z) */
    {0x30080251, 0xFFFFFFFF, 'D'}, /* Treatment Time (X/D) */
    {0x300A0736, 0xFFFFFFFF, 'D'}, /* Treatment Tolerance Violation DateTime (D) */
    {0x300A0734, 0xFFFFFFFF, 'D'}, /* Treatment Tolerance Violation Description (D) */
    {0x0018100A, 0xFFFFFFFF, 'X'}, /* UDI Sequence (X) */
    {0x0040A124, 0xFFFFFFFF, 'U'}, /* UID (U) */
    {0x00181009, 0xFFFFFFFF, 'X'}, /* Unique Device Identifier (X) */
    {0x30100033, 0xFFFFFFFF, 'D'}, /* User Content Label (D) */
    {0x30100034, 0xFFFFFFFF, 'D'}, /* User Content Long Label (D) */
    {0x0040A352, 0xFFFFFFFF, 'X'}, /* Verbal Source (Trial) (X) */
    {0x0040A358, 0xFFFFFFFF, 'X'}, /* Verbal Source Identifier Code Sequence (Trial) (X) */
    {0x0040A088, 0xFFFFFFFF, 'Z'}, /* Verifying Observer Identification Code Sequence (Z) */
    {0x0040A075, 0xFFFFFFFF, 'D'}, /* Verifying Observer Name (D) */
    {0x0040A073, 0xFFFFFFFF, 'D'}, /* Verifying Observer Sequence (D) */
    {0x0040A027, 0xFFFFFFFF, 'D'}, /* Verifying Organization (D) */
    {0x00384000, 0xFFFFFFFF, 'X'}, /* Visit Comments (X) */
    {0x00189371, 0xFFFFFFFF, 'D'}, /* X-Ray Detector ID (D) */
    {0x00189373, 0xFFFFFFFF, 'X'}, /* X-Ray Detector Label (X) */
    {0x00189367, 0xFFFFFFFF, 'D'}, /* X-Ray Source ID (D) */
};

const cs_dicom_deid_rule *cs_dicom_deid_rules(size_t *n)
{
    *n = sizeof rules / sizeof rules[0];
    return rules;
}
