return {
  name = "annotations",
  version = "1.0.0",
  api = 1,
  needs = {"annot.write"},
  events = {"annotation.created", "annotation.updated", "annotation.deleted", "image.opened"},
  config = {
    autolabel = true,  -- name new unlabelled annotations "<Class or Type> <n>"
    summary_ms = 200,  -- at most one annotations.summary per slide per this many ms
  },
}
