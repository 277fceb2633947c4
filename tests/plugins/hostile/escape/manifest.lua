return {name = "escape", version = "1.0", api = 1, needs = {}}
