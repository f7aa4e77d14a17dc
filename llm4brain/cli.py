"""Command line: ``llm4brain simulate``, ``describe``, ``check-data``, ``provenance`` and
``chat``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main"]


def _simulate(args) -> int:
    from .config import load_config, save_config
    from .sim import simulate_dataset

    cfg = load_config(args.profile)
    out = Path(args.out) if args.out else cfg.data_root
    root = simulate_dataset(cfg, out, seed=args.seed, overwrite=args.overwrite,
                            progress=not args.quiet)
    save_config(cfg, root.parent, name=f"simulate_config.yaml")
    print(json.dumps(dict(root=str(root), profile=cfg.profile,
                          seed=cfg.run.seed if args.seed is None else args.seed)))
    return 0


def _describe(args) -> int:
    from .data import describe_dataset

    data_cfg, root = None, args.root
    if args.profile:
        from .config import load_config

        cfg = load_config(args.profile)
        data_cfg = cfg.data
        root = root or cfg.data_root
    if root is None:
        print("llm4brain describe: error: give the BIDS root or --profile P (its data.root)",
              file=sys.stderr)
        return 2
    d = describe_dataset(root, data_cfg)
    print(json.dumps(d, indent=None if args.compact else 2, default=str))
    if d["problems"]:
        print(f"llm4brain describe: {len(d['problems'])} problem(s):", file=sys.stderr)
        for msg in d["problems"]:
            print(f"  - {msg}", file=sys.stderr)
        return 3 if args.strict else 0
    return 0


def _provenance(args) -> int:
    from .provenance import describe, format_description

    rc = 0
    for f in args.files:
        d = describe(f)
        print(json.dumps(d, default=str) if args.json else format_description(d))
        rc = max(rc, 1 if d["status"] == "changed" else 0)
    return rc


def _check_data(args) -> int:
    from .data._checkdata import check_data, format_check_table

    data_cfg, root, cache_dir, head = None, args.root, None, ""
    if args.profile:
        from .config import load_config

        cfg = load_config(args.profile)
        data_cfg, cache_dir = cfg.data, cfg.run_dir / "cache"
        root = root or cfg.data_root
        head = f"profile {cfg.profile}, "
    if root is None:
        print("llm4brain check-data: error: give the BIDS root or --profile P (its data.root)",
              file=sys.stderr)
        return 2
    if data_cfg is None:
        from .config import DataConfig
        from .data._bids import derivatives_dir

        src = "fmriprep" if derivatives_dir(root, DataConfig()).is_dir() else "raw"
        data_cfg = DataConfig(source=src)
    rows = check_data(root, data_cfg, cache_dir=cache_dir, decode=not args.no_decode)
    print(f"llm4brain check-data: {root} ({head}source {data_cfg.source})")
    print(format_check_table(rows))
    return 1 if any(r.status == "ERROR" for r in rows) else 0
def _chat(args) -> int:
    from .config import load_config
    from .dialogue import ContextTooLongError, load_chat_models

    cfg = load_config(args.profile)
    if cfg.run.num_threads:
        import torch

        torch.set_num_threads(cfg.run.num_threads)
    models = load_chat_models(cfg, domain_adaptation=False if args.no_da else None)
    if args.list_trials:
        rows = models.trials if args.subject is None else \
            models.trials[models.trials["subject"] == models.trial(args.subject, 0)["subject"]]
        print(rows.drop(columns=["position"]).to_string(index=False))
        return 0
    if args.subject is None or args.trial is None:
        print("llm4brain chat: error: give --subject and --trial (or --list-trials); target "
              f"subjects: {', '.join('sub-' + s for s in models.subjects)}", file=sys.stderr)
        return 2
    opts = {} if args.max_new_tokens is None else dict(max_new_tokens=args.max_new_tokens)
    conv = models.conversation(args.subject, args.trial, video=args.video, **opts)
    src = conv.source
    print(f"# {src['subject']}, evaluation trial {src['trial']} (clip {src['clip']}), "
          f"{src['tokens']} tokens, profile {src['profile']}", flush=True)
    if args.ask:
        for q in args.ask:
            print(f"Q: {q}\nA: {conv.ask(q)}", flush=True)
        return 0
    tty = sys.stdin.isatty()
    if tty:
        print("# ask a question; an empty line or Ctrl-D ends, /reset forgets the history",
              flush=True)
    while True:
        try:
            q = input("you> " if tty else "")
        except EOFError:
            break
        q = q.strip()
        if not q:
            break
        if q == "/reset":
            conv.reset()
            print("# history cleared", flush=True)
            continue
        try:
            a = conv.ask(q)
        except ContextTooLongError as exc:
            print(f"llm4brain chat: {exc}", file=sys.stderr, flush=True)
            continue
        print(f"llm> {a}" if tty else f"Q: {q}\nA: {a}", flush=True)
    return 0


def main(argv=None) -> int:
    """Entry point of the ``llm4brain`` console script."""
    p = argparse.ArgumentParser(prog="llm4brain", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("simulate", help="write a simulated HAD-layout dataset")
    s.add_argument("--profile", default="default", help="smoke | default | path to a YAML file")
    s.add_argument("--out", default=None, help="BIDS root to write (default: the profile's data.root)")
    s.add_argument("--seed", type=int, default=None, help="default: run.seed of the profile")
    s.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(fn=_simulate)
    d = sub.add_parser("describe", help="print a JSON summary of a HAD-layout dataset and "
                                        "the problems the loader would stop on")
    d.add_argument("root", nargs="?", default=None,
                   help="BIDS root (default: data.root of --profile)")
    d.add_argument("--profile", default=None,
                   help="profile whose data settings (source, derivatives, space, desc, "
                        "onset_offset, block_trs, lag_s, stimuli_map, invalid_videos, "
                        "resample_to) are used: smoke | default "
                        "| had | urgen | path to a YAML file. Without it: defaults, source "
                        "fmriprep when derivatives/fmriprep exists, else raw")
    d.add_argument("--compact", action="store_true", help="one line")
    d.add_argument("--strict", action="store_true",
                   help="exit with status 3 when problems are found")
    d.set_defaults(fn=_describe)
    v = sub.add_parser("provenance", help="which commit, profile and config made a figure or "
                                          "table (exit 1 if one changed since it was recorded)")
    v.add_argument("files", nargs="+", help="files in a figures directory (png, pdf, csv, md, ...)")
    v.add_argument("--json", action="store_true", help="one JSON object per file")
    v.set_defaults(fn=_provenance)
    c = sub.add_parser("check-data", help="check everything a run will read (files, TRs, grids, "
                                          "onsets, stim clips, disk) and print a table of "
                                          "OK / WARN / ERROR rows; exit status 1 on any ERROR")
    c.add_argument("root", nargs="?", default=None,
                   help="BIDS root (default: data.root of --profile)")
    c.add_argument("--profile", default=None,
                   help="profile whose data settings are checked: smoke | default | had | urgen "
                        "| path to a YAML file (the disk check uses its run.run_dir)")
    c.add_argument("--no-decode", action="store_true",
                   help="check the stim files' presence and declared durations without "
                        "decoding them (faster on 21,600 HAD clips)")
    c.set_defaults(fn=_check_data)
    c = sub.add_parser("chat", help="talk to a recording: the frozen LLM answers questions "
                                    "about a target subject's evaluation trial from its fMRI "
                                    "(Stage II bridge) or, with --video, its clip")
    c.add_argument("--profile", default="default",
                   help="smoke | default | had | urgen | path to a YAML file; its run needs a "
                        "trained Stage II model (notebook 05; make smoke / make reproduce)")
    c.add_argument("--subject", default=None, help="a target subject, e.g. 04 or sub-04")
    c.add_argument("--trial", type=int, default=None,
                   help="the subject's evaluation trial number N (0-based, in trial-cache "
                        "order: the order of results/stage2/fmri2text_*.tsv); --list-trials "
                        "shows them")
    c.add_argument("--video", action="store_true",
                   help="bind the clip's video tokens instead of the fMRI (the reference)")
    c.add_argument("--ask", action="append", default=[], metavar="QUESTION",
                   help="ask this (repeatable; turns in order) and exit; without --ask an "
                        "interactive prompt reads questions until an empty line or EOF")
    c.add_argument("--max-new-tokens", type=int, default=None,
                   help="longest answer in tokens (default max(llm.max_new_tokens, 40))")
    c.add_argument("--no-da", action="store_true",
                   help="use the Stage II run trained without domain adaptation")
    c.add_argument("--list-trials", action="store_true",
                   help="print the evaluation trials (of --subject, or of every target "
                        "subject) and exit")
    c.set_defaults(fn=_chat)
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"llm4brain {args.cmd}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
