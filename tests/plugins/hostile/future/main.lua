cs.log.info("never loaded")
