"""PNG plots of an ablation: Gen PPL vs the swept setting, the Gen PPL–entropy frontier, loss curves."""

from __future__ import annotations

from pathlib import Path

from elfctl.train.loggers import read_metrics


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(summary: dict, root: Path) -> list[Path]:
    try:
        plt = _plt()
    except ImportError:
        return []  # matplotlib is optional (pip install elfctl[plots])
    rows = [r for r in summary["rows"] if r.get("genppl") is not None]
    written: list[Path] = []
    title = f"{summary['ablation']} ({summary['scale']})"
    judge = rows[0].get("judge", "") if rows else ""

    if rows and summary.get("plot_x"):
        # one line per series (distill-steps: the model and its distilled student); entropy beside Gen PPL
        metrics = [("genppl", f"Gen PPL ({judge})")]
        if all(r.get("entropy") is not None for r in rows):
            metrics.append(("entropy", "entropy (nats)"))
        fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.5), squeeze=False)
        series = list(dict.fromkeys(r.get("series", "model") for r in rows))
        for ax, (key, label) in zip(axes[0], metrics):
            for name in series:
                pts = sorted((r["x"], r[key]) for r in rows if r.get("series", "model") == name)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
            if summary["plot_x"] == "sample.steps":
                ax.set_xscale("log", base=2)
            ax.set_xlabel(summary["plot_x"])
            ax.set_ylabel(label)
            if len(series) > 1:
                ax.legend(fontsize=7)
        axes[0][0].set_title(title, fontsize=10)
        written.append(_save(fig, root / f"genppl_vs_{summary['plot_x'].split('.')[-1]}.png", plt))

    if rows and all(r.get("entropy") is not None for r in rows):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        series = list(dict.fromkeys(r.get("series", "model") for r in rows))
        if len(series) > 1 and summary.get("plot_x"):
            # one frontier line per series (e.g. per model family), its points labelled with the swept value
            for name in series:
                pts = sorted((r["x"], r["entropy"], r["genppl"]) for r in rows if r.get("series", "model") == name)
                ax.plot([p[1] for p in pts], [p[2] for p in pts], marker="o", label=name)
                for x, e, g in pts:
                    ax.annotate(f"{x:g}", (e, g), fontsize=6, xytext=(3, 3), textcoords="offset points")
        else:
            for r in rows:
                ax.scatter(r["entropy"], r["genppl"])
                ax.annotate(r["variant"], (r["entropy"], r["genppl"]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        for name, style in (("data", "--"), ("random", ":")):
            b = (summary.get("baselines") or {}).get(name)
            if b and b.get("genppl") is not None:
                ax.axhline(b["genppl"], color="grey", linestyle=style, linewidth=1)
                ax.scatter([b["entropy"]], [b["genppl"]], marker="*", color="grey", s=60,
                           label=f"{'held-out data' if name == 'data' else 'random tokens'} "
                                 f"({b['genppl']:.0f}, {b['entropy']:.2f})")
        if len(series) > 1 or summary.get("baselines"):
            ax.legend(fontsize=6)
        if summary.get("baselines"):
            ax.set_yscale("log")
        ax.set_xlabel("entropy (nats)")
        ax.set_ylabel(f"Gen PPL ({judge})")
        ax.set_title(f"{title}: Gen PPL vs entropy", fontsize=10)
        written.append(_save(fig, root / "frontier.png", plt))

    curves = []
    for run_dir in dict.fromkeys(r["run_dir"] for r in summary["rows"]):  # unique, in order
        ms = [m for m in read_metrics(Path(run_dir)) if "loss" in m and "step" in m]
        if ms:
            curves.append((Path(run_dir).name, ms))
    if curves:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for name, ms in curves:
            ax.plot([m["step"] for m in ms], [m["loss"] for m in ms], label=name)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        ax.set_title(f"{title}: loss curves", fontsize=10)
        written.append(_save(fig, root / "loss.png", plt))
    return written


def _save(fig, path: Path, plt) -> Path:
    import io

    from elfctl.atomic import atomic_write_bytes

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path
