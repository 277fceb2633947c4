return {name = "loadspin", version = "1.0", api = 1, needs = {}}
