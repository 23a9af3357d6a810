"""A web page in headless Chromium publishes through the gateway and reads the document back.

The page (``browser/page.html``) and shirokuma's browser bundle are served by the test's own
static HTTP server (another origin than the gateway: CORS is part of what is tested); Debian's
``chromium`` (``make browser``) is driven by playwright-core.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pandanode.client import Client, generate_key_pair
from pandanode.services.node import Node

pytestmark = pytest.mark.interop

INTEROP_DIR = Path(__file__).parent
CHROMIUM = Path("/usr/bin/chromium")
BUNDLE = INTEROP_DIR / "node_modules" / "shirokuma" / "lib" / "esm-bundle" / "index.js"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    """A static HTTP server of the test page and shirokuma's bundle; its base URL."""
    root = tmp_path / "site"
    root.mkdir()
    shutil.copy(INTEROP_DIR / "browser" / "page.html", root / "index.html")
    shutil.copy(BUNDLE, root / "shirokuma.js")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    # ES modules need a JavaScript MIME type whatever the system's mime.types says.
    extensions_map = {  # noqa: RUF012 - the base class declares it so
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
    }

    def log_message(self, format: str, *args: Any) -> None:
        pass


async def run_page(
    url: str, profile: Path, script: str = "browser_flow.mjs", *extra: str
) -> dict[str, Any]:
    node_js = shutil.which("node")
    assert node_js is not None, "the interop tests need Node.js (make setup)"
    process = await asyncio.create_subprocess_exec(
        *(node_js, str(INTEROP_DIR / script), str(CHROMIUM), url, str(profile), *extra),
        cwd=INTEROP_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 180)
    assert process.returncode == 0, stderr.decode(errors="replace")[-4000:]
    result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return result


def _need_browser() -> None:
    if not CHROMIUM.exists():
        pytest.skip(
            "no browser: /usr/bin/chromium is missing and `make browser` could not install it "
            "(it needs apt-get as root)"
        )
    assert (INTEROP_DIR / "node_modules" / "playwright-core").is_dir(), "npm install (make setup)"


async def test_a_page_in_headless_chromium_publishes_with_shirokuma_and_reads_it_back(
    node: Node, site: str, tmp_path: Path
) -> None:
    _need_browser()
    async with Client.connect(node.address, key_pair=generate_key_pair()) as client:
        schema_id = await client.create_schema("note", "A note", {"title": "str", "count": "int"})
        endpoint = f"http://{node.http_address}/graphql"
        result = await run_page(
            f"{site}/index.html?endpoint={endpoint}&schema={schema_id}", tmp_path / "profile"
        )
        assert result.get("ok"), result
        assert "HeadlessChrome" in result["userAgent"] or "Chrome" in result["userAgent"]
        assert result["document"]["fields"] == {"title": "from the browser", "count": 42}
        assert result["document"]["meta"]["viewId"] == result["viewId"]
        stored = await client.get_document(view_id=result["viewId"], after=result["viewId"])
    assert stored.owner == result["publicKey"]
    assert stored.fields == {"title": "from the browser", "count": 42}


async def test_the_playground_runs_queries_in_headless_chromium_with_nothing_from_elsewhere(
    node: Node, tmp_path: Path
) -> None:
    _need_browser()
    async with Client.connect(node.address, key_pair=generate_key_pair()) as client:
        schema_id = await client.create_schema("memo", "A memo", {"title": "str"})
        published = await client.create(schema_id, {"title": "typed in the playground"})
        await client.get_document(published.document_id, after=published)
    query = f"""query Memos($title: String!) {{
  all_{schema_id}(filter: {{title: {{eq: $title}}}}) {{
    totalCount documents {{ meta {{ documentId }} fields {{ title }} }}
  }}
}}"""
    variables = json.dumps({"title": "typed in the playground"})
    seen = await run_page(
        f"http://{node.http_address}/graphql",
        tmp_path / "profile",
        "playground_flow.mjs",
        query,
        variables,
    )
    assert seen["elsewhere"] == [] and seen["errors"] == [], seen
    assert seen["contentType"] == "text/html; charset=utf-8"
    assert seen["result"]["state"] == "done", seen["result"]
    assert seen["result"]["status"].startswith("HTTP 200")
    assert json.loads(seen["result"]["text"]) == {
        "data": {
            f"all_{schema_id}": {
                "totalCount": 1,
                "documents": [
                    {
                        "meta": {"documentId": published.document_id},
                        "fields": {"title": "typed in the playground"},
                    }
                ],
            }
        }
    }
    assert f"all_{schema_id}(filter: {schema_id}Filter" in seen["schema"]
    assert (
        "publish(entry: EncodedEntry!, operation: EncodedOperation!): NextArguments!"
        in (seen["schema"])
    )
