"""`semedit weights list | download NAME | verify [NAME...]`: the pretrained files semedit can use."""

from __future__ import annotations

import argparse

from semedit import weights as W
from semedit.cli.commands import add_command
from semedit.perception import clip, faces  # noqa: F401 - they register the parse checks of their file kinds

__all__ = ["register"]


def _list(args: argparse.Namespace) -> int:
    for entry in W.REGISTRY.values():
        path = W.expected_path(entry)
        state = "present" if path.is_file() else "missing"
        digest = entry.sha256 or (f"{entry.sha256_prefix}... (prefix from the file name)" if entry.sha256_prefix
                                  else "unknown")
        print(f"{entry.name}  [{state}]")
        print(f"    purpose:  {entry.purpose}")
        print(f"    file:     {path}")
        print(f"    source:   {entry.source}")
        print(f"    url:      {entry.url}" + ("" if entry.download else "  (web page: download by hand)")
              + (f"  (member {entry.archive_member})" if entry.archive_member else ""))
        print(f"    sha256:   {digest}")
        if args.verbose and entry.aliases:
            print(f"    aliases:  {', '.join(entry.aliases)}")
    print(f"\nweights folder: {W.weights_dir()} (set $SEMEDIT_WEIGHTS to change); LPIPS backbones: "
          f"{W.torch_hub_checkpoints_dir()} ($TORCH_HOME)")
    return 0


def _download(args: argparse.Namespace) -> int:
    path = W.download_weights(args.name, force=args.force, progress=not args.quiet)
    status, detail = W.verify_file(args.name, path)
    print(f"{W.get_entry(args.name).name}: {path} [{status}] {detail}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    names = args.names or list(W.REGISTRY)
    bad = 0
    checked = 0
    for name in names:
        entry = W.get_entry(name)
        path = W.expected_path(entry)
        if not path.is_file():
            if args.names:  # asked for explicitly: absence is a failure
                print(f"{entry.name}: missing ({path})")
                bad += 1
            continue
        checked += 1
        status, detail = W.verify_file(entry, path, deep=not args.fast)
        print(f"{entry.name}: {status} - {path}: {detail}")
        bad += status == "corrupt"
    if checked == 0 and not args.names:
        print(f"no registry files present in {W.weights_dir()} or {W.torch_hub_checkpoints_dir()}")
    return 1 if bad else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "weights")
    sub = p.add_subparsers(dest="weights_command", metavar="ACTION", required=True)

    ls = sub.add_parser("list", help="every pretrained file: name, purpose, source, expected path, state")
    ls.add_argument("-v", "--verbose", action="store_true", help="also show aliases")
    ls.set_defaults(func=_list)

    dl = sub.add_parser("download", help="download a registry file (needs network) and verify it")
    dl.add_argument("name", help="registry name (see `semedit weights list`)")
    dl.add_argument("--force", action="store_true", help="download again even if present")
    dl.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    dl.set_defaults(func=_download)

    vf = sub.add_parser("verify", help="check the present files (SHA-256 where published; files parse)")
    vf.add_argument("names", nargs="*", help="registry names (default: every present file)")
    vf.add_argument("--fast", action="store_true", help="digests only, do not parse the files")
    vf.set_defaults(func=_verify)
