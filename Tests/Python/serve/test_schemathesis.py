"""schemathesis against /openapi.json (the tiny model, an API key): generated valid and invalid requests; no 5xx, no
response outside the document (status, content type, schema), authentication enforced where declared, invalid
requests refused.

The run is bounded by count, not time, so that a busy machine makes it slower rather than weaker: the coverage phase,
then up to SCHEMATHESIS_EXAMPLES (default 250) generated cases per operation, with a fixed seed. The number of
requests sent is printed and must reach SCHEMATHESIS_MIN_REQUESTS (default 1000).
One worker: with two, hypothesis (describing its strategies with `ast.parse` in both threads) now and then hits
CPython 3.11's `SystemError: AST constructor recursion depth mismatch` (python/cpython#106905), which schemathesis
reports as an error of the run."""
import json
import os
import pathlib
import subprocess
import sys
import tempfile

from conftest import API_KEY


def test_schemathesis_finds_nothing(keyed_tiny_server):
    examples = os.environ.get("SCHEMATHESIS_EXAMPLES", "250")
    with tempfile.TemporaryDirectory() as d:
        report = pathlib.Path(d) / "events.ndjson"
        cmd = [sys.executable, "-m", "schemathesis.cli", "run", keyed_tiny_server.url + "/openapi.json",
               "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
                           "response_headers_conformance,negative_data_rejection,ignored_auth",
               "--phases", "coverage,fuzzing", "--generation-database", "none", "-H", "Authorization: Bearer " + API_KEY,
               "--seed", "1", "--workers", "1", "--max-examples", examples, "--request-timeout", "60",
               "--report", "ndjson", "--report-ndjson-path", str(report), "--no-color"]
        # In the temporary directory: schemathesis keeps a crash cache (.schemathesis/) in its working directory,
        # which would otherwise be left in the checkout and replayed by the next run.
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=d)
        requests = 0
        statuses = {}
        if report.exists():
            for line in report.read_text().splitlines():
                event = json.loads(line).get("ScenarioFinished")
                for interaction in ((event or {}).get("recorder") or {}).get("interactions", {}).values():
                    requests += 1
                    code = (interaction.get("response") or {}).get("status_code")
                    statuses[code] = statuses.get(code, 0) + 1
        print("schemathesis: %d requests, statuses %s" % (requests, dict(sorted(statuses.items(), key=str))))
        tail = run.stdout[-8000:] + run.stderr[-2000:]
        assert run.returncode == 0, tail
        assert requests >= int(os.environ.get("SCHEMATHESIS_MIN_REQUESTS", "1000")), tail
        assert not any(code is not None and code >= 500 for code in statuses)
