"""Independent check of texts produced by Squish's JSON-schema automaton: each must parse with Python's json module
and validate against its schema with the jsonschema package (Draft 2020-12); each text listed as invalid must fail one
of the two.

Input (argv[1]): [{"schema": {...}, "valid": ["...", ...], "invalid": ["...", ...]}, ...]
Output: one JSON line {"checked": n}; exit 1 with the offending text on the first disagreement.
"""
import json
import sys

import jsonschema


def conforms(schema, text):
    try:
        value = json.loads(text)
    except ValueError as e:
        return False, "not JSON: %s" % e
    try:
        jsonschema.Draft202012Validator(schema).validate(value)
    except jsonschema.ValidationError as e:
        return False, "invalid: %s" % e.message
    return True, ""


def main():
    cases = json.load(open(sys.argv[1], encoding="utf-8"))
    checked = 0
    for case in cases:
        schema = case["schema"]
        for text in case.get("valid", []):
            ok, why = conforms(schema, text)
            if not ok:
                print("FAIL valid text rejected (%s)\nschema: %s\ntext: %r" % (why, json.dumps(schema), text), file=sys.stderr)
                sys.exit(1)
            checked += 1
        for text in case.get("invalid", []):
            ok, _ = conforms(schema, text)
            if ok:
                print("FAIL invalid text accepted\nschema: %s\ntext: %r" % (json.dumps(schema), text), file=sys.stderr)
                sys.exit(1)
            checked += 1
    print(json.dumps({"checked": checked}))


if __name__ == "__main__":
    main()
