-- The annotations plugin names new unlabelled annotations "<Class or Type> <n>".
local function ann(id, fields)
  local a = {id = id, slide = "s1", type = "rectangle", pts = {{0, 0}, {10, 10}},
             label = "", class = "", rev = 1, measure = {area_um2 = 25}}
  for k, v in pairs(fields or {}) do a[k] = v end
  return a
end

describe("auto-label", function()
  it("labels an unclassified shape by its Type", function()
    h.emit("annotation.created", ann("a1", {type = "ellipse"}))
    assert.same({{op = "annot.update", id = "a1", rev = 1, patch = {label = "Ellipse 1"}}},
                h.commands())
  end)

  it("counts per class and per slide", function()
    h.emit("annotation.created", ann("a1", {class = "Tumor"}))
    h.emit("annotation.created", ann("a2", {class = "Tumor"}))
    h.emit("annotation.created", ann("a3", {class = "Stroma"}))
    h.emit("annotation.created", ann("a4", {class = "Tumor", slide = "s2"}))
    local labels = {}
    for _, c in ipairs(h.commands()) do labels[c.id] = c.patch.label end
    assert.same({a1 = "Tumor 1", a2 = "Tumor 2", a3 = "Stroma 1", a4 = "Tumor 1"}, labels)
  end)

  it("leaves labelled annotations and text alone", function()
    h.emit("annotation.created", ann("a1", {label = "margin"}))
    h.emit("annotation.created", ann("a2", {type = "text"}))
    assert.same({}, h.commands())
  end)

  it("does not react to its own updates or creations", function()
    h.emit("annotation.created", ann("a1"), {origin = "annotations"})
    h.emit("annotation.updated", ann("a1", {rev = 2}), {origin = "annotations"})
    assert.same({}, h.commands())
  end)

  it("waits for command.done and is quiet on success", function()
    h.emit("annotation.created", ann("a1"))
    local r = h.requests()
    assert.equals(1, #r)
    h.complete(r[1].req, {id = "a1", rev = 2, label = "Rectangle 1"})
    assert.same({}, h.commands())
    assert.equals("", h.stats().last_error)
  end)

  it("re-reads and retries once on a conflict while the label is still empty", function()
    h.snapshot{annotations = {ann("a1", {rev = 3, class = "Tumor"})}}
    h.emit("annotation.created", ann("a1", {class = "Tumor"}))
    local first = h.requests()[1]
    assert.equals(1, first.cmd.rev)
    h.complete(first.req, nil, "conflict")
    local r = h.requests()
    assert.equals(1, #r)
    assert.same({op = "annot.update", id = "a1", rev = 3, patch = {label = "Tumor 1"}}, r[1].cmd)
    h.complete(r[1].req, nil, "conflict") -- only once: no third attempt
    assert.same({}, h.commands())
  end)

  it("gives up on a conflict when someone labelled it meanwhile", function()
    h.snapshot{annotations = {ann("a1", {rev = 2, label = "mine"})}}
    h.emit("annotation.created", ann("a1"))
    h.complete(h.requests()[1].req, nil, "conflict")
    assert.same({}, h.commands())
  end)

  it("continues numbering after the labels already on an opened slide", function()
    h.snapshot{annotations = {ann("a1", {class = "Tumor", label = "Tumor 7"}),
                              ann("x", {slide = "other", class = "Tumor", label = "Tumor 40"})}}
    h.emit("image.opened", {slide = "s1", kind = "wsi", levels = 3, mpp = 0.25})
    h.emit("annotation.created", ann("a2", {class = "Tumor"}))
    assert.equals("Tumor 8", h.commands()[1].patch.label)
  end)

  it("keeps its counters across a hot reload", function()
    h.emit("annotation.created", ann("a1", {class = "Tumor"}))
    h.commands()
    assert.is_true(h.reload())
    h.emit("annotation.created", ann("a2", {class = "Tumor"}))
    assert.equals("Tumor 2", h.commands()[1].patch.label)
    assert.equals(0, h.stats().strikes)
  end)
end)
