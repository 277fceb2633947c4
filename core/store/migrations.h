/* Private to core/store: the schema migrations embedded in the binary.
 * Append only: a released migration never changes (its checksum is kept in
 * the database and checked). */
#ifndef CS_MIGRATIONS_H
#define CS_MIGRATIONS_H

typedef struct {
    int version;
    const char *sql;
} cs_migration;

static const cs_migration cs_migrations[] = {
    {1, "CREATE TABLE audit ("
        "  id INTEGER PRIMARY KEY,"
        "  at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),"
        "  code TEXT NOT NULL,"
        "  event TEXT NOT NULL,"
        "  outcome INTEGER NOT NULL CHECK (outcome IN (0, 4, 8, 12)),"
        "  user TEXT NOT NULL,"
        "  client TEXT NOT NULL,"
        "  object TEXT"
        ") STRICT;"
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
        "  BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;"
        "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
        "  BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;"},
    /* Annotations: the current version of each (a tombstone once deleted),
     * and the op log every live event comes from (seq = WebSocket resume
     * point). Plugin key/value storage. */
    {2, "CREATE TABLE annotations ("
        "  id TEXT PRIMARY KEY,"
        "  slide TEXT NOT NULL,"
        "  rev INTEGER NOT NULL,"
        "  deleted INTEGER NOT NULL DEFAULT 0,"
        "  x0 REAL NOT NULL, y0 REAL NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL,"
        "  body TEXT NOT NULL"
        ") STRICT;"
        "CREATE INDEX annotations_slide ON annotations (slide, deleted);"
        "CREATE TABLE annotation_events ("
        "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  slide TEXT NOT NULL,"
        "  event TEXT NOT NULL,"
        "  origin TEXT NOT NULL,"
        "  aid TEXT NOT NULL,"
        "  rev INTEGER NOT NULL,"
        "  body TEXT NOT NULL"
        ");"
        "CREATE INDEX annotation_events_slide ON annotation_events (slide, seq);"
        "CREATE TABLE plugin_storage ("
        "  plugin TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
        "  PRIMARY KEY (plugin, key)"
        ") STRICT;"},
    /* The DICOM node (core/dimse): the study index over the files at
     * <store>/<study>/<series>/<sop>.dcm (path relative to the store), and
     * the auto-forward queue (a row leaves once its peer acknowledged it). */
    {3, "CREATE TABLE dicom_studies ("
        "  study_uid TEXT PRIMARY KEY, patient_id TEXT, patient_name TEXT,"
        "  patient_birth_date TEXT, patient_sex TEXT, study_date TEXT, study_time TEXT,"
        "  accession TEXT, study_id TEXT, study_desc TEXT, referring TEXT,"
        "  updated_at TEXT NOT NULL);"
        "CREATE TABLE dicom_series ("
        "  series_uid TEXT PRIMARY KEY,"
        "  study_uid TEXT NOT NULL REFERENCES dicom_studies(study_uid),"
        "  modality TEXT, series_number INTEGER, series_desc TEXT, body_part TEXT,"
        "  updated_at TEXT NOT NULL);"
        "CREATE TABLE dicom_instances ("
        "  sop_uid TEXT PRIMARY KEY,"
        "  series_uid TEXT NOT NULL REFERENCES dicom_series(series_uid),"
        "  study_uid TEXT NOT NULL, sop_class TEXT NOT NULL, instance_number INTEGER,"
        "  transfer_syntax TEXT NOT NULL, rows INTEGER, cols INTEGER, frames INTEGER,"
        "  path TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL, source_aet TEXT,"
        "  received_at TEXT NOT NULL);"
        "CREATE INDEX dicom_series_study ON dicom_series(study_uid);"
        "CREATE INDEX dicom_instances_series ON dicom_instances(series_uid, instance_number);"
        "CREATE INDEX dicom_studies_patient ON dicom_studies(patient_id);"
        "CREATE INDEX dicom_studies_date ON dicom_studies(study_date);"
        "CREATE TABLE forward_queue ("
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  sop_uid TEXT NOT NULL, peer TEXT NOT NULL, transfer_syntax TEXT,"
        "  attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL DEFAULT 0,"
        "  last_error TEXT, created_at TEXT NOT NULL);"
        "CREATE INDEX forward_queue_next ON forward_queue(peer, next_at, id);"},
};

#define CS_MIGRATION_COUNT ((int)(sizeof(cs_migrations) / sizeof(cs_migrations[0])))

#endif
