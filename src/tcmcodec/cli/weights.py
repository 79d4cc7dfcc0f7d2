"""``tcm weights``: the authors' published checkpoints in the user cache (list, download, import)."""

from __future__ import annotations

import argparse

from .registry import UsageError, command


def _configure_weights(p: argparse.ArgumentParser) -> None:
    subs = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    subs.required = True
    subs.add_parser("list", help="the published checkpoints, and which are in the cache")
    dl = subs.add_parser("download", help="download (and verify) published checkpoints into the cache")
    dl.add_argument("--model", required=True, metavar="NAME", help="preset, e.g. tcm-s")
    dl.add_argument("--quality", type=float, metavar="Q", help="which checkpoint (default: all of the preset's)")
    imp = subs.add_parser("import", help="put a checkpoint you downloaded into the cache, verified")
    imp.add_argument("file", metavar="FILE", help="the checkpoint (e.g. the authors' .pth.tar)")
    imp.add_argument("--model", metavar="NAME", help="its preset (default: found from its architecture)")
    imp.add_argument("--quality", type=float, metavar="Q",
                     help="which of the preset's checkpoints it is (needed for tcm-s: 1..6)")


@command("weights", "list, download or import the authors' checkpoints", _configure_weights)
def cmd_weights(args: argparse.Namespace) -> int:
    """The authors' published checkpoints (tcm-s qualities 1..6, tcm-l quality 6) live in a user cache
    ($TCMCODEC_CACHE/weights, default ~/.cache/tcmcodec/weights) and are downloaded on first use.
    Offline, download a file by hand and import it."""
    from tcmcodec.zoo import hub

    if args.action == "list":
        print(f"cache: {hub.cache_dir()}")
        for preset in hub.published_presets():
            for w in preset.published:
                state = "cached" if hub.cached_path(w).is_file() else "-"
                print(f"{preset.name:<6}  q{w.quality}  lambda {w.lmbda:<6g}  {state:<6}  {w.page}")
        return 0
    if args.action == "download":
        from tcmcodec import zoo

        preset = zoo.get_preset(args.model)
        if not preset.published:
            raise UsageError(f"{args.model} has no published checkpoints")
        qualities = [w.quality for w in preset.published] if args.quality is None else [args.quality]
        for q in qualities:
            print(f"{preset.name} q{q:g}: {hub.fetch_weights(preset, q)}")
        return 0
    path = hub.import_weights(args.file, args.model, args.quality)
    print(f"{args.file} -> {path}")
    return 0
