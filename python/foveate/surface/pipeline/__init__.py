"""What the front doors share: reading documents as one pipeline that runs one way,

    inputs -> pages (plan.py) -> a reader (local.py, or surface/ray/driver.py) -> sinks (sinks.py)

with run.py moving each page from the reader to the sinks. A reader stage yields a PageDone
(page.py) per page, in order or not; a sink never knows which reader ran. Also here: the
`-o` file formats and journal (output.py), the progress bar (progress.py) and fixation's
trace pictures (trace_picture.py), used by the CLI and the server.
"""
