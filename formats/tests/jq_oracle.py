"""Real jq for the differential test (formats/tests/jq_differential.rs).

PyPI's `jq` package 1.8.0 bundles libjq 1.7.1 (Debian's jq is 1.6). Reads one JSON request a
line, {"program": P, "inputs": [JSON text, ...]}, and answers a line, one result per input:
{"outputs": [jq's own text of each output]} or {"error": message}. `tojson` writes each output
as jq itself prints it (the Python binding's values would round big numbers).
"""

import importlib.metadata
import json
import sys

import jq

VERSION = "1.8.0"


def main():
    found = importlib.metadata.version("jq")
    if found != VERSION:
        sys.exit(f"jq_oracle: the jq package is {found}, expected {VERSION}")
    print(json.dumps({"ready": VERSION}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            program = jq.compile(f"({request['program']}) | tojson")
        except Exception as error:  # jq refuses the program itself
            print(json.dumps({"compile_error": str(error)}), flush=True)
            continue
        results = []
        for text in request["inputs"]:
            try:
                results.append({"outputs": program.input_text(text).all()})
            except Exception as error:
                results.append({"error": str(error)})
        print(json.dumps({"results": results}), flush=True)


main()
