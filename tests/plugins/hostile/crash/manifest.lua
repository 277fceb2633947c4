return {name = "crash", version = "1.0", api = 1, needs = {}}
