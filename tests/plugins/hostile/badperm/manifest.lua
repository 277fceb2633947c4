return {name = "badperm", version = "1.0", api = 1, needs = {"root"}}
