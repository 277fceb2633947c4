return {name = "future", version = "1.0", api = 2, needs = {}}
