-- The annotations plugin emits "annotations.summary" per slide, coalesced.
local function ann(id, class, area, slide)
  return {id = id, slide = slide or "s1", type = "polygon", label = "x", class = class,
          rev = 1, pts = {{0, 0}, {1, 0}, {1, 1}}, measure = {area_um2 = area}}
end

local function summaries()
  local out = {}
  for _, e in ipairs(h.emits()) do
    if e.name == "annotations.summary" then out[#out + 1] = e.data end
  end
  return out
end

describe("summary", function()
  it("counts and sums area per class, once per 200 ms per slide", function()
    h.emit("annotation.created", ann("a1", "Tumor", 100))
    h.emit("annotation.created", ann("a2", "Tumor", 50.5))
    h.emit("annotation.created", ann("a3", "Stroma", 10))
    h.advance(199)
    assert.same({}, summaries())
    h.advance(1)
    assert.same({{slide = "s1", classes = {Tumor = {count = 2, area_um2 = 150.5},
                                           Stroma = {count = 1, area_um2 = 10}}}}, summaries())
  end)

  it("follows updates and deletions", function()
    h.emit("annotation.created", ann("a1", "Tumor", 100))
    h.emit("annotation.created", ann("a2", "Tumor", 20))
    h.advance(200)
    summaries()
    local a2 = ann("a2", "Necrosis", 30)
    a2.rev = 2
    h.emit("annotation.updated", a2)
    h.emit("annotation.deleted", {id = "a1", slide = "s1", rev = 2, deleted = true})
    h.advance(200)
    assert.same({{slide = "s1", classes = {Necrosis = {count = 1, area_um2 = 30}}}}, summaries())
  end)

  it("keeps slides apart and names the unclassified", function()
    h.emit("annotation.created", ann("a1", "", 5, "s1"))
    h.emit("annotation.created", ann("b1", "Tumor", 7, "s2"))
    h.advance(200)
    local got = {}
    for _, s in ipairs(summaries()) do got[s.slide] = s.classes end
    assert.same({s1 = {Unclassified = {count = 1, area_um2 = 5}},
                 s2 = {Tumor = {count = 1, area_um2 = 7}}}, got)
  end)

  it("counts what an opened slide already holds", function()
    h.snapshot{annotations = {ann("a1", "Tumor", 1), ann("a2", "Tumor", 2),
                              ann("z", "Tumor", 9, "s9")}}
    h.emit("image.opened", {slide = "s1", kind = "wsi"})
    h.advance(200)
    assert.same({{slide = "s1", classes = {Tumor = {count = 2, area_um2 = 3}}}}, summaries())
  end)

  it("treats a missing measure (no MPP) as zero area", function()
    local a = ann("a1", "Tumor", 0)
    a.measure = nil
    h.emit("annotation.created", a)
    h.advance(200)
    assert.same({{slide = "s1", classes = {Tumor = {count = 1, area_um2 = 0}}}}, summaries())
  end)

  it("runs its handlers without errors or strikes", function()
    h.emit("annotation.created", ann("a1", "Tumor", 1))
    h.advance(1000)
    local st = h.stats()
    assert.equals("running", st.state)
    assert.equals(0, st.strikes)
    assert.truthy(st.memory > 0 and st.memory <= st.memory_peak)
  end)
end)
