"""Layer 4, what users call: the front doors, each in its own folder, and what they share.

    api/       Reader, and both methods on a llama-cpp-python Llama (llama_cpp_bridge)
    pipeline/  documents as one pipeline: plan -> reader stage -> sinks; output formats,
               progress, trace pictures (shared by the doors below)
    server/    `foveate serve`: the OpenAI-compatible app, its scheduler, its web page
    ray/       pages on a Ray cluster: the workers, and the driver's reader stage
    cli/       `foveate COMMAND`: one module per command

Doors import downward only: the CLI may import the server, Ray and the API; the server and
Ray import the API and the pipeline, not each other; the API imports neither
(tests/test_layers.py). Instruments that drive a door (soak, bench_server, bench_ray) live
in instruments/ and rank between the doors and the CLI (docs/architecture.md)."""
