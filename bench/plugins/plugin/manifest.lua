return {name = "bench", version = "1.0", api = 1}
