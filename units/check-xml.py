#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# Checks an installed XML data file (polkit policy, D-Bus bus policy) in the
# meson suite 'units': the file must be well-formed, have the given root
# element, and match every --has / --lacks / --text condition. Paths are
# ElementTree paths relative to the root element.
#
#   check-xml.py FILE --root TAG [--has PATH]... [--lacks PATH]...
#                [--text PATH=VALUE]...

import argparse
import sys
import xml.etree.ElementTree as ET


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('file')
    parser.add_argument('--root', required=True)
    parser.add_argument('--has', action='append', default=[])
    parser.add_argument('--lacks', action='append', default=[])
    parser.add_argument('--text', action='append', default=[])
    args = parser.parse_args()

    try:
        root = ET.parse(args.file).getroot()
    except (ET.ParseError, OSError) as e:
        print(f'FAIL: {args.file}: {e}')
        return 1

    errors = []
    if root.tag != args.root:
        errors.append(f'root element is <{root.tag}>, expected <{args.root}>')
    for path in args.has:
        if root.find(path) is None:
            errors.append(f'missing {path}')
    for path in args.lacks:
        if root.find(path) is not None:
            errors.append(f'unexpected {path}')
    for cond in args.text:
        path, _, value = cond.rpartition('=')
        found = root.findall(path)
        if not found:
            errors.append(f'missing {path}')
        for el in found:
            text = (el.text or '').strip()
            if text != value:
                errors.append(f'{path} is "{text}", expected "{value}"')

    for e in errors:
        print(f'FAIL: {args.file}: {e}')
    if errors:
        return 1
    print(f'OK: {args.file}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
