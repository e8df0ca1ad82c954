"""`r1 pipeline RECIPE --out DIR`: the DeepSeek-R1 multi-stage pipeline, resumable.

A recipe names a base `model`, a shared `task` / `prompt` / `rollout` (the problems, the
template and stop strings every RL stage and every evaluation use), an `eval` section, and
`stages`, each with a `name`, a `kind` and its own settings:

``sft``      SFT on a file of conversations (`data`), e.g. long readable CoT for the cold start
``distill``  generate with a teacher (`generate`; `teacher: <stage>` uses a stage's model),
             filter, optionally mix in general SFT data (`general_data`), SFT — R1's stage 3
``grpo``     GRPO (`grpo`: rewards, algorithm, optim, train...) on the shared task and prompt

Each stage trains `input` (default: the previous stage's model; `base` for the base model)
and writes everything under `DIR/<name>/`, its model at `DIR/<name>/model`; then that model
is evaluated on the task's held-out set (`DIR/<name>/eval/`). `DIR/manifest.json` records
every stage: status, input, resolved config, a fingerprint (config + input), the output
model's content hash, versions. A run continued with `--resume` skips stages that are done with
an unchanged fingerprint, resumes a stage that was killed (from its checkpoints), and redoes a
stage whose config or input changed together with every stage after it. `DIR/report.md` and
`DIR/report.html` compare all stages side by side (accuracy, format, language consistency,
response length).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
from pathlib import Path
from typing import Any

from r1.config import apply_overrides, build_config, build_sft_config, merge
from r1.data.prompts import PromptFormat, user_content
from r1.data.reasoning import split_reasoning
from r1.data.tasks import build_task, get_task
from r1.errors import R1Error
from r1.eval.runner import EvalConfig, config_settings, run_eval
from r1.pipeline.distill import run_distill
from r1.pipeline.generate import run_split
from r1.pipeline.recipes import PipelineRecipe, parse
from r1.report.pipeline import write_pipeline_report
from r1.rewards.language import language_consistency
from r1.runs import read_jsonl, read_log, write_jsonl_atomic
from r1.tracking import collect_versions
from r1.trainers import checkpoint as ckpt
from r1.trainers.grpo import GRPOTrainer
from r1.trainers.sft import SFTTrainer


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def model_hash(folder: Path) -> str:
    """sha256 over a model folder's weight and config files (names and bytes)."""
    h = hashlib.sha256()
    for f in sorted(folder.glob("*")):
        if f.is_file() and f.suffix in (".safetensors", ".json", ".bin", ".model", ".txt"):
            h.update(f.name.encode())
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


class Pipeline:
    def __init__(self, recipe: dict[str, Any], out: str | Path, overrides: list[str] | None = None,
                 source: str = "", progress: bool = True, resume: bool = False):
        self.recipe = apply_overrides(merge({}, recipe), overrides or [])
        self.out = Path(out)
        self.source = source or "pipeline recipe"
        # relative data paths in a recipe file are relative to the file
        self.recipe_dir = Path(source).parent if source and Path(source).is_file() else Path.cwd()
        self.progress, self.resume = progress, resume
        typed = parse(PipelineRecipe, self.recipe, self.source)
        # the stages as written (their fingerprints are of what the user wrote)
        stages = [st.model_dump(exclude_unset=True) | {"kind": st.kind} for st in typed.stages]
        names = []
        for st in stages:
            if st["name"] in names or st["name"] == "base":
                raise R1Error(f"{self.source}: stage name {st['name']!r} is used twice or reserved")
            ref = st.get("input")
            if ref is not None and ref != "base" and ref not in names:
                raise R1Error(f"{self.source}: stage {st['name']!r}: input {ref!r} is not an earlier stage")
            names.append(st["name"])
        self.stages, self.eval = stages, typed.eval
        self.seed, self.base = typed.seed, typed.model
        self.shared = self._grpo_config({})  # validates task/prompt/rollout now

    # ------------------------------------------------------------------ configs
    def _grpo_config(self, section: dict, model: str | None = None):
        data = {"seed": self.seed, "model": {"name": model or self.base}}
        for key in ("task", "prompt", "rollout"):
            if key in self.recipe:
                data[key] = merge({}, self.recipe[key])
        section = merge({}, section)
        if "task" in section and section["task"].get("name", data.get("task", {}).get("name")) != \
                data.get("task", {}).get("name"):
            data["task"] = {k: v for k, v in data.get("task", {}).items() if k in ("train_size", "heldout_size")}
        data = merge(data, section)
        params = data.get("task", {}).get("params", {})
        for key in ("path", "general", "heldout_path"):  # data files named relative to the recipe
            value = params.get(key)
            if isinstance(value, str) and not Path(value).is_absolute() and (self.recipe_dir / value).exists():
                params[key] = str(self.recipe_dir / value)
        if model:
            data.setdefault("model", {})["name"] = model
        data.setdefault("tracking", {}).setdefault("progress", self.progress)
        return build_config(data, source=self.source)

    def model_of(self, name: str) -> str:
        return self.base if name == "base" else str(self.out / name / "model")

    # ------------------------------------------------------------------ manifest
    def _manifest(self) -> dict:
        path = self.out / "manifest.json"
        return json.loads(path.read_text()) if path.is_file() else {"stages": []}

    def _save_manifest(self, manifest: dict) -> None:
        tmp = self.out / ".manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=1))
        tmp.replace(self.out / "manifest.json")

    # ------------------------------------------------------------------ run
    def run(self) -> dict:
        if (self.out / "manifest.json").is_file() and not self.resume:
            raise R1Error(f"{self.out} already holds a pipeline run: pass --resume to continue it, or choose "
                          "another --out")
        self.out.mkdir(parents=True, exist_ok=True)
        manifest = self._manifest()
        old = {s["name"]: s for s in manifest.get("stages", [])}
        entries: list[dict] = []
        invalid = False  # a changed stage invalidates every later one
        prev_name, prev_hash = "base", _hash(self.base)
        for st in self.stages:
            name = st["name"]
            src = st.get("input") or prev_name
            input_hash = prev_hash if src == prev_name else next(
                (e["output_hash"] for e in entries if e["name"] == src), _hash(self.base))
            fingerprint = _hash({"stage": st, "input": input_hash, "shared": {k: self.recipe.get(k) for k in
                                                                             ("seed", "task", "prompt", "rollout", "eval")}})
            entry = {"name": name, "kind": st["kind"], "input": src, "input_model": self.model_of(src),
                     "config": st, "fingerprint": fingerprint, "status": "pending", "versions": collect_versions()}
            prior = old.get(name)
            stage_dir = self.out / name
            done = (not invalid and prior is not None and prior.get("fingerprint") == fingerprint
                    and prior.get("status") == "done" and (stage_dir / "model" / "config.json").is_file())
            if done:
                entries.append(prior)
                prev_name, prev_hash = name, prior["output_hash"]
                continue
            if prior is not None and (invalid or prior.get("fingerprint") != fingerprint):
                shutil.rmtree(stage_dir, ignore_errors=True)  # a changed stage starts over
                invalid = True
            entry["status"] = "running"
            entries.append(entry)
            self._save_manifest({"stages": entries + [s for s in manifest.get("stages", [])
                                                     if s["name"] not in {e["name"] for e in entries}]})
            self._run_stage(st, src, stage_dir)
            entry["metrics"] = self._evaluate(self.model_of(name), stage_dir / "eval")
            entry["output_hash"] = model_hash(stage_dir / "model")
            entry["status"] = "done"
            self._save_manifest({"stages": entries})
            prev_name, prev_hash = name, entry["output_hash"]
        manifest = {"stages": entries}
        base_metrics = self._base_metrics()
        self._save_manifest({**manifest, "base": {"model": self.base, "metrics": base_metrics}})

        write_pipeline_report(self.out, base_metrics, entries)
        return {"base": base_metrics, "stages": entries}

    def _run_stage(self, st: dict, src: str, stage_dir: Path) -> None:
        model = self.model_of(src)
        resume = (stage_dir / "checkpoints").exists() and ckpt.latest_checkpoint(stage_dir / "checkpoints") is not None
        kind = st["kind"]
        if kind == "grpo":
            cfg = self._grpo_config(st.get("grpo", {}), model)
            GRPOTrainer(cfg, stage_dir, resume=resume).train()
        elif kind == "sft":
            data = merge({"seed": self.seed, "tracking": {"progress": self.progress}}, st.get("sft", {}))
            data["model"] = {**data.get("model", {}), "name": model}
            if "data" in st:
                data["data"] = self._sft_data(st["data"], stage_dir)
            SFTTrainer(build_sft_config(data, source=f"{self.source}: {st['name']}"), stage_dir, resume=resume,
                       prompt_for=self.prompt_for).train()
        else:
            self._distill(st, model, stage_dir)

    def prompt_for(self, tokenizer) -> PromptFormat:
        """The shared prompt, which every stage's model is evaluated with (and an SFT stage's
        model carries as its chat template)."""
        return PromptFormat.of(self.shared, build_task(self.shared).answer_hint, tokenizer)

    def _sft_data(self, section: dict, stage_dir: Path) -> dict:
        """Rows with a raw `question` get the pipeline's prompt as their user turn, so that SFT
        sees the prompt RL and evaluation use; other rows (messages, problem) pass as they are."""

        section = dict(section)
        path = section.get("path")
        if not path:
            return section
        if not Path(path).is_absolute():
            path = str(self.recipe_dir / path)
        rows = read_jsonl(path)
        hint = get_task(self.shared.task.name, self.shared.task.params).answer_hint
        out = [{"problem": user_content(r["question"], self.shared.prompt.template, hint), **{
            k: v for k, v in r.items() if k != "question"}} if "question" in r and "messages" not in r else r
            for r in rows]
        stage_dir.mkdir(parents=True, exist_ok=True)
        write_jsonl_atomic(stage_dir / "sft_data.jsonl", out)
        section["path"] = str(stage_dir / "sft_data.jsonl")
        return section

    def _distill(self, st: dict, model: str, stage_dir: Path) -> None:
        """Rejection sampling + SFT: a teacher (a stage's model) samples the shared task's
        training problems with the shared prompt, the filter keeps verified readable
        samples, general data is mixed in, and `model` is fine-tuned on it."""

        teacher = st.get("teacher")
        gen = merge({}, st.get("generate", {}))
        if teacher:
            if teacher not in {s["name"] for s in self.stages} and teacher != "base":
                raise R1Error(f"{self.source}: stage {st['name']!r}: teacher {teacher!r} is not a stage")
            shared = self.shared
            gen.update(model=self.model_of(teacher), task=shared.task.name, task_params=dict(shared.task.params),
                       prompt=shared.prompt.model_dump(), stop=list(shared.rollout.stop), suffix="",
                       split=run_split(shared))  # the training problems only: held-out stays unseen
        sft = merge({"tracking": {"progress": self.progress}}, st.get("sft", {}))
        sft["model"] = {**sft.get("model", {}), "name": model}
        recipe = {"seed": self.seed, "generate": gen, "filter": st.get("filter", {}), "sft": sft}
        general = st.get("general_data")
        if general and not Path(general).is_absolute():
            general = str(self.recipe_dir / general)
        run_distill(recipe, stage_dir, progress=self.progress, source=f"{self.source}: {st['name']}",
                    extra_data=general, resume=True, prompt_for=self.prompt_for)
        # the stage's model is the SFT output: a relative link, not a second copy of the weights
        target = stage_dir / "model"
        if not target.is_symlink() and not target.exists():
            target.symlink_to(Path("sft") / "model", target_is_directory=True)

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, model: str, out: Path) -> dict:
        ev = self.eval
        task, examples, name, fields = config_settings(self.shared, "pipeline")
        cfg = EvalConfig(model=model, benchmark=name, samples=ev.samples,
                         max_new_tokens=ev.max_new_tokens or self.shared.rollout.max_new_tokens,
                         limit=ev.limit, seed=self.seed, **fields)
        res = run_eval(cfg, out, task=task, examples=examples, progress=self.progress, resume=True)

        rows = read_log(out / "samples.jsonl")

        lang = [language_consistency(split_reasoning(r["completion"])[0] or r["completion"], ev.language)
                for r in rows]
        m = res["metrics"]
        return {"pass@1": m["pass@1"], "pass@1_se": m["pass@1_se"], "format_rate": m["format_rate"],
                "language_consistency": statistics.fmean(lang) if lang else 0.0,
                "response_length_mean": m["response_length_mean"], "problems": m["problems"]}

    def _base_metrics(self) -> dict:
        path = self.out / "base_eval" / "metrics.json"
        if path.is_file():
            return json.loads(path.read_text())
        m = self._evaluate(self.base, self.out / "base_eval")
        path.write_text(json.dumps(m))
        return m
