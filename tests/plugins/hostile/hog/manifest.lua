return {name = "hog", version = "1.0", api = 1, needs = {}}
