"""The curl examples of README.md's "Serving" section, run as written (only the address changed to
the test server's) against a server with keys: every command succeeds and none answers an error."""
import os
import re
import subprocess

from conftest import KEY_A, ROOT


def test_readme_curl_examples(server):
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text[text.index("## Serving"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) >= 3 and all("curl" in b for b in blocks)
    for block in blocks:
        script = "set -euo pipefail\n" + block.replace("http://localhost:8080", server.url)
        out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "DW_KEY": KEY_A})
        assert out.returncode == 0, out.stderr
        assert '"error":{' not in out.stdout.replace(' ', ''), out.stdout  # an error object, not "error": null
        assert out.stdout.strip()
    assert "data: [DONE]" in out.stdout or "actor.deleted" in out.stdout
