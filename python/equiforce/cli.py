"""Command-line interface: ``equiforce {init,export,import,info,committee,demo,train,evaluate,bench,spectra,label}``."""
import argparse
import json
import sys
from typing import List, Optional


def _cmd_init(args: argparse.Namespace) -> int:
    import torch

    from .checkpoint import save_checkpoint
    from .nn import EquivariantPotential, ModelConfig

    torch.manual_seed(args.seed)
    config = ModelConfig(
        elements=args.elements,
        cutoff=args.cutoff,
        lmax=args.lmax,
        parity=not args.no_parity,
        num_features=args.features,
        num_layers=args.layers,
    )
    model = EquivariantPotential(config)
    save_checkpoint(model, args.output)
    print(f"wrote untrained checkpoint {args.output} ({sum(p.numel() for p in model.parameters())} parameters)")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .checkpoint import model_from_checkpoint
    from .export import export_model

    overrides = None
    if args.repulsion_from:
        from .data import read_structures
        from .nn import repulsion_radii_from_structures

        radii = repulsion_radii_from_structures(read_structures(args.repulsion_from), args.repulsion_margin)
        overrides = {"repulsion_radii": radii, "repulsion_strength": args.repulsion_strength}
        print("short-range wall (Å, below the shortest distances in the data): "
              + ", ".join(f"{k} {v:.3f}" for k, v in radii.items()) + f"; strength {args.repulsion_strength} eV")
    model = model_from_checkpoint(args.checkpoint, use_ema=not args.no_ema, config_overrides=overrides)
    from .nn import DEFAULT_KNOTS

    knots = DEFAULT_KNOTS if args.radial_table_knots is None else args.radial_table_knots
    if args.format == "aoti":  # torch.export + AOTInductor package, run by openmm.PythonForce
        from .export import export_aoti

        metadata = export_aoti(model, args.output, dtype=args.dtype, max_atoms=args.max_atoms,
                               max_edges=args.max_edges, threads=args.threads)
        bounds = metadata["aoti"]
        print(f"wrote {args.output} (AOTInductor, {bounds['compile_seconds']:.0f} s to compile): elements "
              f"{metadata['elements']}, cutoff {metadata['cutoff']} Å, {args.dtype}, {bounds['min_atoms']}-"
              f"{bounds['max_atoms']} atoms, at most {bounds['max_edges']} pairs within the cutoff")
        return 0
    metadata = export_model(model, args.output, dtype=args.dtype, radial_table_knots=knots or None)
    print(f"wrote {args.output}: elements {metadata['elements']}, cutoff {metadata['cutoff']} Å, {args.dtype}")
    table = metadata["radial_table"]
    if table:
        print(f"radial MLPs tabulated on {table['knots']} knots ({table['spacing_angstrom']:.4g} Å apart; largest "
              f"interpolation error {table['max_relative_error']:.2g} of the largest weight)")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from .imports import import_nequip, import_sevennet

    if args.kind in ("sevennet-0", "7net-0"):
        if args.path is not None:
            raise ValueError(f"{args.kind} is the pretrained model shipped inside sevenn: give no PATH "
                             "(for a checkpoint of your own: equiforce import sevennet PATH)")
        metadata = import_sevennet("7net-0", args.output, dtype=args.dtype, modal=args.modal,
                                   fused_convolution=not args.no_fused_convolution)
    elif args.kind == "sevennet":
        if args.path is None:
            raise ValueError("equiforce import sevennet needs PATH: a SevenNet checkpoint (.pth) or a pretrained "
                             "name sevenn knows (7net-0, 7net-l3i5)")
        metadata = import_sevennet(args.path, args.output, dtype=args.dtype, modal=args.modal,
                                   fused_convolution=not args.no_fused_convolution)
    elif args.kind == "nequip":
        if args.path is None:
            raise ValueError("equiforce import nequip needs PATH: a NequIP training checkpoint (.ckpt) or a "
                             "nequip-package file (.nequip.zip)")
        metadata = import_nequip(args.path, args.output, dtype=args.dtype,
                                 fused_convolution=not args.no_fused_convolution)
    else:
        raise ValueError(f"unknown import kind {args.kind!r}")
    print(f"{args.output}: {len(metadata['elements'])} elements ({' '.join(metadata['elements'])}), "
          f"cutoff {metadata['cutoff']} Å, {metadata['dtype']}; run it with "
          f"MLPotential('equiforce', modelPath='{args.output}')")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .export import read_metadata

    print(json.dumps(read_metadata(args.model), indent=2))
    return 0


def _cmd_committee(args: argparse.Namespace) -> int:
    from .committee import export_committee

    metadata = export_committee(args.checkpoints, args.output, dtype=args.dtype, use_ema=not args.no_ema)
    print(f"wrote {args.output}: a committee of {metadata['committee']['num_members']} members (mean energy), "
          f"elements {metadata['elements']}, cutoff {metadata['cutoff']} Å, {args.dtype}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import torch

    from .demo import DemoSettings, run_demo

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = DemoSettings(
        model=args.model,
        molecules=args.molecules,
        temperature=args.temperature,
        timestep_fs=args.timestep,
        classical_ps=args.classical_ps,
        nvt_steps=args.nvt_steps,
        nve_steps=args.nve_steps,
        platform=args.platform,
        precision=args.precision,
    )
    result = run_demo(settings)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, train

    config = TrainConfig.from_yaml(args.config)
    if args.device is not None:
        config.device = args.device
    if args.no_progress:
        config.progress = False
    resume = True if args.resume else (False if args.restart else None)
    metrics = train(config, resume=resume)
    import os

    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 prints (every rank trained)
        return 0
    summary = {split: {k: metrics[split][k] for k in ("energy_mae", "energy_rmse", "force_mae", "force_rmse")}
               for split in ("validation", "test") if metrics[split] is not None}
    print(f"best epoch {metrics['best_epoch']} of {metrics['epochs']}; meV/atom and meV/Å: {json.dumps(summary)}")
    print(f"wrote {config.output_dir}/metrics.json" + (f" and {config.export}" if config.export else ""))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_model, format_errors, write_json

    result = evaluate_model(args.model, args.data, start=args.start, stop=args.stop, progress=True)
    print(format_errors(result))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import os

    from . import bench

    results = "benchmarks/results"
    out = args.out or os.path.join(results, f"{args.what}_quick.json" if args.quick else f"{args.what}.json")
    if args.replot:
        return _replot_bench(args.what, out)
    if args.quick and os.path.exists(out):  # a quick run checks the pipeline: always afresh, never continued
        os.remove(out)
    if args.what == "speed":
        if args.quick:
            result = bench.run_speed([32], model_file=args.model, warmup_steps=2, block_steps=2, blocks=3, out=out,
                                     threads=args.threads)
        else:
            methods = bench.METHODS + (bench.PEER_METHODS if args.peers else [])
            if args.aoti:
                from .bench._speed import AOTI_METHODS

                methods += AOTI_METHODS
            result = bench.run_speed(args.molecules or [32, 128, 512, 2048], model_file=args.model, methods=methods,
                                     platform=args.platform, out=out, threads=args.threads)
    else:
        if args.quick:
            protocol = bench.NVEProtocol(duration_ps=0.1, equilibration_ps=0.02, classical_ps=0.2)
            result = bench.run_nve([32], [0.5], protocol, model_file=args.model, out=out)
        else:
            protocol = bench.NVEProtocol(duration_ps=args.duration, threads=args.threads or 0, platform=args.platform,
                                         seed=args.seed)
            result = bench.run_nve(args.molecules or [32, 128], args.timesteps or [0.25, 0.5, 1.0], protocol,
                                   methods=args.methods, dtypes=args.dtypes, model_file=args.model, out=out,
                                   work_dir=args.work,
                                   max_minutes=args.max_minutes)
    _write_bench_report(args.what, result, out)
    print(f"wrote {out}")
    return 0


def _write_bench_report(what: str, result: dict, out: str) -> None:
    """The markdown table and the plot beside a benchmark's JSON ``out``, from its ``result``; prints the table."""
    import os

    from . import bench

    stem = os.path.splitext(out)[0]
    if what == "speed":
        table = bench.speed_table(result) + "\n\n" + bench.speed_goals(result)
        bench.plot_speed(result, stem + ".png")
    else:
        table = bench.nve_table(result)
        if not bench.plot_nve(result, stem + ".png"):
            print("no NVE run has finished yet: no plot")
    with open(stem + ".md", "w") as handle:
        handle.write(table + "\n")
    print(table)


def _replot_bench(what: str, out: str) -> int:
    """Rewrite the markdown table and the plot beside a benchmark's JSON from the JSON alone (nothing runs)."""
    import json
    import os

    if not os.path.exists(out):
        raise SystemExit(f"equiforce bench {what} --replot: no results file {out} (name it with --out)")
    with open(out) as handle:
        result = json.load(handle)
    _write_bench_report(what, result, out)
    print(f"rewrote the .md and .png beside {out} from it")
    return 0


def _cmd_spectra(args: argparse.Namespace) -> int:
    import ase.io
    import numpy as np
    from scipy.signal import find_peaks

    from .spectra import NVESettings
    from .spectra import md_spectra, save_spectra

    atoms = ase.io.read(args.structure)
    settings = NVESettings(temperature_K=args.temperature, trajectories=args.trajectories,
                           thermalise_ps=args.thermalise_ps, nve_ps=args.nve_ps, timestep_fs=args.timestep,
                           save_every_fs=args.save_every, platform=args.platform, seed=args.seed)
    result = md_spectra(args.model, args.properties, atoms, settings, args.out_dir, max_lag_fs=args.max_lag)
    print(f"resolution {result['ir'].resolution:.1f} cm^-1; strongest peaks above {args.min_wavenumber} cm^-1:")
    for kind in ("ir", "raman_iso", "raman_aniso"):
        spectrum = result[kind]
        above = spectrum.wavenumber > args.min_wavenumber
        found, _ = find_peaks(spectrum.intensity * above)
        strongest = sorted(found, key=lambda k: -spectrum.intensity[k])[:args.peaks]
        print(f"  {kind:12s}" + "".join(f"{spectrum.wavenumber[k]:9.1f}" for k in sorted(strongest)))
    out = args.json or f"{args.out_dir}/spectra.json"
    save_spectra(result, out, {"settings": vars(settings), "mean_temperature_K":
                               float(np.mean(result["md"]["mean_temperature_K"]))})
    print(f"wrote {out} and {args.out_dir}/properties.npz")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from .active import SampleSettings, sample

    settings = SampleSettings(temperature_K=args.temperature, timestep_fs=args.timestep, frames=args.frames,
                              every=args.every, equilibration_steps=args.equilibration_steps, seed=args.seed,
                              platform=args.platform)
    record = sample(args.structure, args.output, settings, model=args.model, forcefield=args.forcefield,
                    progress=not args.no_progress, committee=args.committee, stop_spread=args.stop_spread,
                    start_frame=args.start_frame)
    if record.get("stopped"):
        print(f"stopped early at {record['stopped']}")
    if args.committee:
        from .active import DISAGREEMENT_KEY, select_by_disagreement
        from .active._frames import read_frames, write_frames

        frames = read_frames(args.output)  # each with its spread under the committee, stored by sample()
        chosen, summary = select_by_disagreement(frames, [a.info[DISAGREEMENT_KEY] for a in frames], args.select,
                                                 args.ceiling)
        selected = args.selected or args.output.rsplit(".", 1)[0] + ".selected.extxyz"
        write_frames(selected, chosen)
        print(f"committee {args.committee}: kept the {len(chosen)} of {len(frames)} frames with the largest force "
              f"spread ({json.dumps(summary['selected_spread_eV_per_A'])} eV/Å) in {selected}")
    print(f"wrote {record['frames_written']} frames to {args.output}")
    return 0


def _cmd_learn(args: argparse.Namespace) -> int:
    from .active import LearnConfig, learn

    learn(LearnConfig.from_yaml(args.config), progress=not args.no_progress)
    return 0


def _cmd_label(args: argparse.Namespace) -> int:
    from .label import format_summary, label_frames

    summary = label_frames(args.input, args.output, method=args.method, workers=args.workers, charge=args.charge,
                           accuracy=args.accuracy, electronic_temperature_K=args.electronic_temperature,
                           max_iterations=args.max_iterations, retry_failed=args.retry_failed,
                           progress=not args.no_progress)
    print(format_summary(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="equiforce", description="E(3)-equivariant ML potentials for OpenMM")
    sub = parser.add_subparsers(dest="command", required=True)

    init = sub.add_parser("init", help="write an untrained model checkpoint")
    init.add_argument("-o", "--output", required=True, help="checkpoint path to write")
    init.add_argument("--elements", nargs="+", required=True, help="chemical symbols, e.g. H O")
    init.add_argument("--cutoff", type=float, default=5.0, help="cutoff radius in Å")
    init.add_argument("--lmax", type=int, default=1)
    init.add_argument("--features", type=int, default=32)
    init.add_argument("--layers", type=int, default=3)
    init.add_argument("--no-parity", action="store_true", help="SO(3) features only (no reflections)")
    init.add_argument("--seed", type=int, default=0)
    init.set_defaults(run=_cmd_init)

    export = sub.add_parser("export", help="export a checkpoint to one TorchScript file")
    export.add_argument("checkpoint")
    export.add_argument("-o", "--output", required=True, help="TorchScript file to write")
    export.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    export.add_argument("--no-ema", action="store_true", help="export the raw weights, not the EMA weights")
    export.add_argument("--radial-table-knots", type=int, default=None, metavar="K",
                        help="tabulate the radial MLPs on K knots (cubic Hermite, CPU; default "
                             "equiforce.nn.DEFAULT_KNOTS = 1025; 0: keep the MLPs)")
    export.add_argument("--repulsion-from", nargs="+", default=None, metavar="DATA",
                        help="add a short-range wall below the shortest distance of each element pair in DATA")
    export.add_argument("--repulsion-margin", type=float, default=0.03, help="wall onset = shortest distance - this (Å)")
    export.add_argument("--repulsion-strength", type=float, default=500.0, help="wall strength A (eV)")
    export.add_argument("--format", choices=["torchscript", "aoti"], default="torchscript",
                        help="torchscript (TorchForce, default) or aoti: a torch.export + AOTInductor package run "
                             "through openmm.PythonForce (needs a C++ compiler; see docs/aoti.md)")
    export.add_argument("--max-atoms", type=int, default=20000, help="aoti: most atoms the package accepts")
    export.add_argument("--threads", type=int, default=None,
                        help="aoti: CPU threads compiled into the package (default: torch.get_num_threads())")
    export.add_argument("--max-edges", type=int, default=None,
                        help="aoti: most ordered pairs within the cutoff it accepts (default 100 per atom)")
    export.set_defaults(run=_cmd_export)

    imported = sub.add_parser("import", help="write a pretrained model of another project (SevenNet-0, a SevenNet "
                              "checkpoint, a NequIP model) as one equiforce model file")
    imported.add_argument("kind", choices=["sevennet-0", "7net-0", "sevennet", "nequip"],
                          help="sevennet-0: the pretrained SevenNet-0 shipped inside the sevenn package; sevennet: "
                               "a SevenNet checkpoint given as PATH; nequip: a NequIP .ckpt or .nequip.zip as PATH")
    imported.add_argument("path", nargs="?", default=None, help="the checkpoint (for kinds that need one)")
    imported.add_argument("-o", "--output", required=True, help="model file to write")
    imported.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    imported.add_argument("--modal", default=None, help="fidelity of a multi-fidelity SevenNet checkpoint")
    imported.add_argument("--no-fused-convolution", action="store_true",
                          help="keep e3nn's convolution code instead of equiforce's fused native op")
    imported.set_defaults(run=_cmd_import)

    info = sub.add_parser("info", help="print the metadata of an exported model")
    info.add_argument("model")
    info.set_defaults(run=_cmd_info)

    committee = sub.add_parser("committee", help="write several checkpoints as ONE model file: mean energy for MD, "
                               "members' spread for uncertainty (equiforce.committee)")
    committee.add_argument("checkpoints", nargs="+", help="training checkpoints (same elements and cutoff)")
    committee.add_argument("-o", "--output", required=True, help="committee model file to write")
    committee.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    committee.add_argument("--no-ema", action="store_true", help="the raw weights, not the EMA weights")
    committee.set_defaults(run=_cmd_committee)

    demo = sub.add_parser("demo", help="classical start, NVT, then NVE of a periodic water box: speed, temperature, "
                          "energy fluctuation (drift only where the run resolves it)")
    demo.add_argument("--model", default=None, help="exported model (default: the shipped water model)")
    demo.add_argument("--molecules", type=int, default=32)
    demo.add_argument("--temperature", type=float, default=300.0, help="K")
    demo.add_argument("--timestep", type=float, default=0.5, help="fs")
    demo.add_argument("--classical-ps", type=float, default=2.0,
                      help="ps of flexible TIP3P-FB equilibration before the model takes over (0: start from the grid)")
    demo.add_argument("--nvt-steps", type=int, default=1000)
    demo.add_argument("--nve-steps", type=int, default=1000)
    demo.add_argument("--platform", default="CPU")
    demo.add_argument("--precision", choices=["float32", "float64"], default=None)
    demo.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    demo.add_argument("--json", default=None, help="also write the results to this JSON file")
    demo.set_defaults(run=_cmd_demo)
    train = sub.add_parser("train", help="train a potential from a YAML config (see equiforce.train.TrainConfig)")
    train.add_argument("config", help="YAML file whose keys are TrainConfig fields")
    resume = train.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true", help="resume from OUTPUT_DIR/last.ckpt (the default "
                        "when it exists); fail if it does not exist")
    resume.add_argument("--restart", action="store_true", help="start afresh even if OUTPUT_DIR/last.ckpt exists")
    train.add_argument("--device", default=None, help="override the config's device (auto, cpu, cuda, cuda:N)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    train.set_defaults(run=_cmd_train)
    evaluate = sub.add_parser("evaluate", help="energy and force errors of an exported model on labelled frames")
    evaluate.add_argument("model", help="exported model file (equiforce export)")
    evaluate.add_argument("data", nargs="+", help="labelled frames: extxyz or any format ASE reads")
    evaluate.add_argument("--start", type=int, default=0, help="first frame (of the concatenated files)")
    evaluate.add_argument("--stop", type=int, default=None, help="one past the last frame")
    evaluate.add_argument("--json", default=None, help="also write the errors to this JSON file")
    evaluate.set_defaults(run=_cmd_evaluate)
    bench = sub.add_parser("bench", help="speed (ms/step, ns/day) or NVE energy-conservation benchmark")
    bench.add_argument("what", choices=["speed", "nve"])
    bench.add_argument("--quick", action="store_true", help="smallest system, few steps (checks the pipeline)")
    bench.add_argument("--out", default=None, help="JSON file (a .md table and a .png plot are written beside it)")
    bench.add_argument("--replot", action="store_true",
                       help="run nothing: rewrite the .md table and .png plot from the --out JSON")
    bench.add_argument("--model", default=None, help="exported model (default: shipped water model or same size)")
    bench.add_argument("--molecules", type=int, nargs="+", default=None, help="water box sizes (molecules)")
    bench.add_argument("--timesteps", type=float, nargs="+", default=None, help="nve: fs (default 0.25 0.5 1.0)")
    bench.add_argument("--dtypes", nargs="+", choices=["float32", "float64"], default=None,
                       help="nve: model precisions (default both)")
    bench.add_argument("--methods", nargs="+", choices=["equiforce", "classical"], default=None,
                       help="nve: methods, run in this order (default: equiforce classical)")
    bench.add_argument("--duration", type=float, default=20.0, help="nve: ps of NVE per run")
    bench.add_argument("--work", default="runs/bench/nve",
                       help="nve: each run saves its state here and a rerun of the same command continues it")
    bench.add_argument("--seed", type=int, default=1,
                       help="nve: seed of the box, the classical start and the NVT noise; runs with other seeds are "
                            "independent replicas of a case (give each its own --out)")
    bench.add_argument("--max-minutes", type=float, default=None,
                       help="nve: stop cleanly after this wall time (several processes may run the same command: "
                            "each takes the cases no other has claimed)")
    bench.add_argument("--threads", type=int, default=None,
                       help="torch and OpenMM CPU threads for every method (default: all cores)")
    bench.add_argument("--platform", default="CPU", help="OpenMM platform of the full runs (CPU or CUDA)")
    bench.add_argument("--peers", action="store_true",
                       help="also run nequip through openmm-ml (needs requirements-bench.txt and the peer build)")
    bench.add_argument("--aoti", action="store_true",
                       help="speed: also run aoti-pythonforce (the model compiled by AOTInductor, in openmm.PythonForce;"
                            " compiled once per dtype into runs/bench/aoti/)")
    bench.set_defaults(run=_cmd_bench)
    spectra = sub.add_parser("spectra", help="IR and Raman spectra of one molecule from NVE trajectories in OpenMM")
    spectra.add_argument("structure", help="the molecule (any file ASE reads; open boundaries, Å)")
    spectra.add_argument("--model", required=True, help="exported energy model (drives the MD)")
    spectra.add_argument("--properties", required=True,
                         help="exported property model with dipole and polarizability heads (export properties=True)")
    spectra.add_argument("--temperature", type=float, default=300.0, help="thermalisation temperature, K")
    spectra.add_argument("--trajectories", type=int, default=6, help="independent NVE trajectories (averaged)")
    spectra.add_argument("--thermalise-ps", type=float, default=0.5, help="Langevin thermalisation per trajectory")
    spectra.add_argument("--nve-ps", type=float, default=10.0, help="NVE length per trajectory, ps")
    spectra.add_argument("--timestep", type=float, default=0.5, help="fs")
    spectra.add_argument("--save-every", type=float, default=2.0, help="fs between saved frames")
    spectra.add_argument("--max-lag", type=float, default=None, help="longest correlation lag, fs (default: half "
                         "the NVE length)")
    spectra.add_argument("--platform", default="Reference", help="OpenMM platform (Reference or CPU)")
    spectra.add_argument("--seed", type=int, default=0)
    spectra.add_argument("--out-dir", default="runs/spectra/md", help="trajectories and properties.npz go here")
    spectra.add_argument("--json", default=None, help="spectra JSON (default OUT_DIR/spectra.json)")
    spectra.add_argument("--min-wavenumber", type=float, default=500.0, help="list peaks above this, cm^-1")
    spectra.add_argument("--peaks", type=int, default=3, help="peaks listed per spectrum")
    spectra.set_defaults(run=_cmd_spectra)
    label = sub.add_parser("label", help="label frames with GFN2-xTB (tblite): energies, forces, dipoles; "
                           "resumable, several worker processes")
    label.add_argument("input", help="frames (any format ASE reads; Å); all periodic or open, elements H..Rn")
    label.add_argument("--method", choices=["gfn2"], default="gfn2")
    label.add_argument("-o", "--output", required=True, help="extended XYZ to write; rerun the command to continue")
    label.add_argument("--workers", type=int, default=1,
                       help="worker processes, one thread each (0: this process; default %(default)s)")
    label.add_argument("--charge", type=int, default=None, help="total charge (e) of frames without info['charge'] "
                       "(default 0)")
    label.add_argument("--accuracy", type=float, default=1.0, help="tblite numerical accuracy")
    label.add_argument("--electronic-temperature", type=float, default=300.0, help="K")
    label.add_argument("--max-iterations", type=int, default=250,
                       help="SCF iterations (a failed frame is retried with damping 0.2 and 4x this)")
    label.add_argument("--retry-failed", action="store_true", help="label again the frames an earlier run "
                       "recorded in OUTPUT.failures.jsonl")
    label.add_argument("--no-progress", action="store_true", help="no progress bar")
    label.set_defaults(run=_cmd_label)
    sampler = sub.add_parser("sample", help="Langevin MD in OpenMM (a model or a classical force field) writing "
                             "candidate frames; with --committee, keep the frames its members disagree on most")
    sampler.add_argument("structure", help="start structure: PDB (its CRYST1 box makes it periodic) or PDBx")
    sampler.add_argument("-o", "--output", required=True, help="extxyz file of the candidate frames (Å; a rerun "
                         "continues it)")
    source = sampler.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", default=None, help="exported model (or committee) file that drives the MD")
    source.add_argument("--forcefield", nargs="+", default=None,
                        help="OpenMM force-field files (flexible, no constraints), e.g. amber14/tip3pfb.xml")
    sampler.add_argument("--temperature", type=float, default=300.0, help="K")
    sampler.add_argument("--timestep", type=float, default=0.5, help="fs")
    sampler.add_argument("--frames", type=int, default=50)
    sampler.add_argument("--every", type=int, default=100, help="steps between frames")
    sampler.add_argument("--equilibration-steps", type=int, default=1000)
    sampler.add_argument("--seed", type=int, default=0)
    sampler.add_argument("--platform", default="CPU")
    sampler.add_argument("--committee", default=None, help="committee file (equiforce committee): select frames")
    sampler.add_argument("--select", type=int, default=16, help="with --committee: frames to keep")
    sampler.add_argument("--ceiling", type=float, default=None, help="with --committee: pass over frames whose "
                         "force spread exceeds this (eV/Å)")
    sampler.add_argument("--selected", default=None, help="with --committee: file of the kept frames (default "
                         "OUTPUT's name + .selected.extxyz)")
    sampler.add_argument("--stop-spread", type=float, default=None, help="with --committee: stop after the first "
                         "frame whose force spread exceeds this (eV/Å)")
    sampler.add_argument("--start-frame", default=None, help="extxyz whose last frame gives the start positions "
                         "(same atoms as STRUCTURE), e.g. a liquid frame of the training data")
    sampler.add_argument("--no-progress", action="store_true")
    sampler.set_defaults(run=_cmd_sample)
    learner = sub.add_parser("learn", help="rounds of sample -> label (GFN2-xTB) -> train a committee, from a YAML "
                             "config (see equiforce.active.LearnConfig); a rerun continues")
    learner.add_argument("config", help="YAML file whose keys are LearnConfig fields")
    learner.add_argument("--no-progress", action="store_true")
    learner.set_defaults(run=_cmd_learn)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"equiforce {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
