"""Save the images of an images API answer read from stdin; print the error instead when it is one.

  curl ... | python3 examples/save_image.py image.png

b64_json images are written to the given file name (image.png, then image-2.png, ... when n > 1);
URLs are printed. An error answer is printed to stderr and the exit code is 1, so that a failed
request does not pass unnoticed in a pipeline. Standard library only.
"""
import base64
import json
import sys
from pathlib import Path


def main() -> int:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "image.png")
    raw = sys.stdin.read()
    try:
        answer = json.loads(raw)
    except ValueError:
        print(f"not a JSON answer: {raw[:300]!r}", file=sys.stderr)
        return 1
    if "error" in answer or "data" not in answer:
        error = answer.get("error") or {}
        print(f"error: {error.get('message')} (type {error.get('type')}, param {error.get('param')}, "
              f"code {error.get('code')})", file=sys.stderr)
        return 1
    for index, item in enumerate(answer["data"], start=1):
        if item.get("url"):
            print(f"url: {item['url']}")
            continue
        path = target if index == 1 else target.with_name(f"{target.stem}-{index}{target.suffix}")
        path.write_bytes(base64.b64decode(item["b64_json"]))
        print(f"saved {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
