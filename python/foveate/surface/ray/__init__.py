"""The Ray front door: pages read on a Ray cluster by actors that each hold one Reader
(workers.py; public names in `foveate.ray`), and the driver's reader stage of
`foveate read --ray` (driver.py). Needs the ray extra."""
