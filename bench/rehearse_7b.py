"""The release graft's whole path at full size, on random weights in the Hub layout: every step a user runs.

    python -m bench.rehearse_7b                      # CPU, 24 GiB, about 80 GB of free disk (make rehearse-7b)
    python -m bench.rehearse_7b --device cuda        # the same on a GPU
    python -m bench.rehearse_7b --scale tiny         # the same steps on a few-MB graft

Steps, each a separate process run the way a user types it, timed, with its peak resident memory
(the whole process tree, sampled every 0.2 s) and the disk it leaves written. Where the machine lets
the process make a memory cgroup (`--memory_caps auto`, `bench/memory_cap.py`), stage 2, bf16
inference and NF4 inference each run under their memory goal as a hard limit (16, 18.5 and 7 GB,
no swap): a step that completes fits in it.

1. `bench.hub_layout`: Qwen2-VL-7B-Instruct and whisper-large-v3-turbo stand-ins (random weights,
   the published configs and key names, a Qwen2-VL-layout tokenizer);
2. `train.build` composes the graft (bf16);
3. stage 1, 2 steps (`train/configs/stage1_7b.yaml`; toy audio instead of the streamed corpus), then
   the same by CTC (`--alignment_objective ctc`: no LLM pass);
4. stage 2, 2 steps (`train/configs/stage2_7b.yaml`: NF4 QLoRA r=64, alpha 16, gradient
   checkpointing; `--optim adamw_torch` on CPU, where bitsandbytes' paged optimizer does not run);
5. `train.merge` into bf16 sharded safetensors, checked against base + adapter loaded apart;
6. `train.evaluate` on two clips (the card's results), then `train.card`;
7. `train.push` to the recording stand-in for the Hub (`--fake_api_record`) with `--verify`; the
   recorded upload is copied to a folder of its own, the Hub stand-in;
8. a fresh process (`python -I`, the project off the path) loads the stand-in through `AutoModel`
   and the stock `pipeline()` and transcribes a clip of tones (the text is noise: the path is what counts),
   found as speech by the energy rule, so that the model generates (`forward_calls` counts its passes);
9. NF4 inference with the vision tower left out: loaded and generating.

Writes the figures and the parameter counts (LLM, vision, encoder, projector, LoRA) to `--out`
(JSON) and prints a Markdown table; the work folder is deleted at the end unless `--keep`.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

import psutil

from bench.memory_cap import MemoryCap, evict_page_cache

REPO = Path(__file__).resolve().parents[1]
REPO_ID = "you/qwen2-vl-7b-audio"
# Python's own files and the installed packages (torch's libraries are over a GB): dropped from the page
# cache before a capped step as well, so that its resident set is all charged to its cgroup.
_PATHS = {Path(sysconfig.get_path(name)) for name in ("stdlib", "platstdlib", "purelib", "platlib")}
LIBRARIES = sorted(path for path in _PATHS if not any(other in path.parents for other in _PATHS))
DONE_WITH = {"build": "hub", "merge": "graft"}  # after the step, the folder no later step reads
# The memory goals (bytes), each step run under its own as a hard limit where cgroups allow (--memory_caps).
MEMORY_GOALS = {"stage2": 16e9, "evaluate": 18.5e9, "fresh_process": 18.5e9, "nf4_audio_only": 7e9}


def tree_rss(process: psutil.Process) -> tuple[int, int]:
    """(resident, anonymous) bytes of the process tree. Resident counts the pages of memory-mapped
    checkpoint files too (safetensors loads by mmap); anonymous (resident less file-backed) is what the
    process itself holds, the part that no other process or the page cache can share."""
    total = anonymous = 0
    for proc in [process, *process.children(recursive=True)]:
        try:
            info = proc.memory_info()
        except psutil.Error:
            continue
        total += info.rss
        anonymous += info.rss - info.shared
    return total, anonymous


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) if folder.exists() else 0


def run_step(name: str, command: list[str], work: Path, env: dict, log, cap_bytes: int | None = None) -> dict:
    """Run one step; its seconds, peak resident memory (GiB) and the work folder's growth (GB). With
    `cap_bytes`, the step runs in a memory cgroup limited to that (its input files first dropped from the
    page cache, so that reading them is charged to the step) and the row gains the group's own peak."""
    before = folder_bytes(work)
    cap = None
    if cap_bytes is not None:
        for folder in (work, *LIBRARIES):  # the pages the step maps, charged to it when it reads them in
            evict_page_cache(folder)
        cap = MemoryCap(f"rehearse-{name}", cap_bytes)
    started = time.time()
    try:
        with open(work / f"{name}.log", "w") as output:
            process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT,
                                       preexec_fn=cap.enter if cap else None)  # fmt: skip
            watched, peak, peak_anonymous = psutil.Process(process.pid), 0, 0
            while True:  # sampled every 0.2 s; the kernel's own peak covers steps shorter than a sample
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    process.returncode = os.waitstatus_to_exitcode(status)
                    peak = max(peak, usage.ru_maxrss * 1024)  # KiB on Linux: the child and its waited-for children
                    break
                resident, anonymous = tree_rss(watched)
                peak, peak_anonymous = max(peak, resident), max(peak_anonymous, anonymous)
                time.sleep(0.2)
        row = {"step": name, "seconds": round(time.time() - started, 1), "peak_rss_gib": round(peak / 2**30, 2),
               "peak_anonymous_gib": round(peak_anonymous / 2**30, 2),
               "disk_written_gb": round((folder_bytes(work) - before) / 1e9, 2), "returncode": process.returncode,
               "command": " ".join(command[2:] if command[1] == "-m" else command)}  # fmt: skip
        if cap is not None:
            row.update(memory_cap_gb=round(cap_bytes / 1e9, 2), cgroup_peak_gb=round(cap.peak_bytes() / 1e9, 2),
                       oom_kills=cap.oom_kills())  # fmt: skip
    finally:
        if cap is not None:
            cap.remove()
    log(row)
    if process.returncode != 0:
        tail = (work / f"{name}.log").read_text()[-3000:]
        killed = f" under its {row['memory_cap_gb']} GB memory cap ({row['oom_kills']} OOM kill)" if row.get("oom_kills") else ""
        raise RuntimeError(f"step {name} failed (exit {process.returncode}){killed}:\n{tail}")
    return row


FRESH_PROCESS = """
import gc, json, sys
from transformers import AutoModel, pipeline
folder, wav = sys.argv[1:3]
model = AutoModel.from_pretrained(folder, trust_remote_code=True, dtype="auto")
auto_model = type(model).__name__
del model  # one copy in memory at a time
gc.collect()
asr = pipeline("automatic-speech-recognition", model=folder, trust_remote_code=True, dtype="auto")
calls = []
asr.model.register_forward_hook(lambda *_: calls.append(1))
# The toy clip is tones, which Silero VAD rightly finds no speech in: the energy rule passes them to the model.
out = asr(wav, max_new_tokens=4, speech_detector="energy")
print("RESULT " + json.dumps({"class": auto_model, "pipeline": type(asr).__name__, "text": out["text"],
                              "dtype": str(asr.model.dtype), "forward_calls": len(calls)}))
"""

NF4_AUDIO_ONLY = """
import json, sys
import torch
from qwen2_audio_graft.configuration_qwen2_audio_graft import Qwen2AudioGraftConfig
from qwen2_audio_graft.pipeline_qwen2_audio_graft import build_prompt, load_audio
from qwen2_audio_graft.processing_qwen2_audio_graft import Qwen2AudioGraftProcessor
from train.weights.quantize import load_4bit, nf4_config
folder, wav, device = sys.argv[1:4]
dtype = torch.bfloat16 if device == "cuda" or torch.backends.mkldnn.is_available() else torch.float32
config = Qwen2AudioGraftConfig.from_pretrained(folder, use_vision_tower=False)
model = load_4bit(folder, nf4_config(dtype), config=config, dtype=dtype, device_map=device).eval()
processor = Qwen2AudioGraftProcessor.from_pretrained(folder, trust_remote_code=True)
inputs = processor(text=build_prompt(processor), audio=load_audio(wav), sampling_rate=16000).to(model.device)
inputs["input_features"] = inputs["input_features"].to(dtype)
import gc, psutil
gc.collect()
loaded = psutil.Process().memory_info()
with torch.no_grad():
    out = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
print("RESULT " + json.dumps({"visual": model.model.visual is None, "new_tokens": out.shape[1] - inputs["input_ids"].shape[1],
                              "weights_gb": round(model.get_memory_footprint() / 1e9, 2),
                              "anonymous_after_load_gib": round((loaded.rss - loaded.shared) / 2**30, 2)}))
"""


def parameter_counts(folder: Path, adapter: Path) -> dict:
    """Parameters of the graft by part (from its config, on the meta device) and of the LoRA adapter."""
    import torch
    from safetensors import safe_open

    from qwen2_audio_graft.configuration_qwen2_audio_graft import Qwen2AudioGraftConfig
    from qwen2_audio_graft.modeling_qwen2_audio_graft import Qwen2AudioGraftForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2AudioGraftForConditionalGeneration(Qwen2AudioGraftConfig.from_pretrained(folder))
    parts = {"llm": ("model.language_model.", "lm_head."), "vision": ("model.visual.",),
             "encoder": ("model.audio_tower.",), "projector": ("model.audio_projector.",)}  # fmt: skip
    counts = {part: sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefixes))
              for part, prefixes in parts.items()}  # fmt: skip
    counts["total"] = sum(counts.values())
    lora = 0
    with safe_open(str(adapter / "adapter_model.safetensors"), framework="pt") as handle:
        for key in handle.keys():
            if ".lora_" in key:
                lora += handle.get_slice(key).get_shape()[0] * handle.get_slice(key).get_shape()[1]
    counts["lora"] = lora
    return counts


def clean_manifest(audio: Path) -> Path:
    """The toy set's generated training clips, without the broken rows it holds for the tests (one of them
    a 121 s clip, which the release graft's 300 s limit accepts): clips like the real corpus's."""
    rows = [line for line in (audio / "train.jsonl").read_text().splitlines() if json.loads(line)["id"].startswith("train-")]
    (audio / "clips.jsonl").write_text("\n".join(rows) + "\n")
    return audio / "clips.jsonl"


def stage_flags(work: Path, output: str, device: str) -> list[str]:
    audio = work / "audio"
    flags = ["--model_path", str(work / "graft"), "--train_data", str(audio / "clips.jsonl"), "--streaming", "false",
             "--audio_column", "audio", "--text_column", "text", "--eval_data", "", "--eval_strategy", "no",
             "--max_steps", "2", "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "1",
             "--save_steps", "2", "--logging_steps", "1", "--output_dir", str(work / output), "--report_to", "none"]  # fmt: skip
    return flags + (["--use_cpu", "true"] if device == "cpu" else [])


def steps(work: Path, scale: str, device: str) -> list[tuple[str, list[str]]]:
    py = [sys.executable, "-m"]
    hub, wav = work / "hub", work / "audio" / "devtest-000.wav"
    stage2_cpu = ["--optim", "adamw_torch"] if device == "cpu" else []
    return [
        ("checkpoints", py + ["bench.hub_layout", "--out", str(hub), "--scale", scale]),
        ("toy_audio", py + ["train.building.toy_audio", "--output", str(work / "audio")]),
        ("build", py + ["train.build", "--llm", str(hub / "Qwen2-VL-7B-Instruct"), "--encoder",
                        str(hub / "whisper-large-v3-turbo"), "--output", str(work / "graft"), "--dtype", "bfloat16"]),
        ("stage1", py + ["train.stage1_align", "--config", "train/configs/stage1_7b.yaml", *stage_flags(work, "stage1", device)]),
        ("stage1_ctc", py + ["train.stage1_align", "--config", "train/configs/stage1_7b.yaml", "--alignment_objective",
                             "ctc", *stage_flags(work, "stage1-ctc", device)]),
        ("stage2", py + ["train.stage2_qlora", "--config", "train/configs/stage2_7b.yaml", "--projector_path",
                         str(work / "stage1"), *stage_flags(work, "stage2", device), *stage2_cpu]),
        ("merge", py + ["train.merge", "--base", str(work / "graft"), "--adapter", str(work / "stage2"), "--output",
                        str(work / "merged"), "--dtype", "bfloat16", "--max_shard_size", "5GB"]),
        ("evaluate", py + ["train.evaluate", "--model", str(work / "merged"), "--data", str(work / "audio" / "devtest.jsonl"),
                           "--max_samples", "2", "--max_new_tokens", "3", "--dtype", "bfloat16", "--batch_size", "2",
                           "--output", str(work / "eval")]),
        ("card", py + ["train.card", "--results", str(work / "eval" / "results.json"), "--repo_id", REPO_ID,
                       "--base_model", "Qwen/Qwen2-VL-7B-Instruct", "--base_model", "openai/whisper-large-v3-turbo",
                       "--output", str(work / "merged" / "README.md"), "--widget_audio", str(wav)]),
        ("push", py + ["train.push", "--folder", str(work / "merged"), "--repo_id", REPO_ID,
                       "--fake_api_record", str(work / "push.json"), "--verify"]),
        ("fresh_process", [sys.executable, "-I", "-c", FRESH_PROCESS, str(work / "hub-standin"), str(wav)]),
        ("nf4_audio_only", [sys.executable, "-c", NF4_AUDIO_ONLY, str(work / "merged"), str(wav), device]),
    ]  # fmt: skip


def make_standin(work: Path) -> None:
    """The files the push recorded, hard-linked into a folder of their own: what the Hub would hold."""
    standin = work / "hub-standin"
    shutil.rmtree(standin, ignore_errors=True)
    for path in json.loads((work / "push.json").read_text())["commits"][-1]["paths"]:
        target = standin / path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(work / "merged" / path, target)


def rehearse(work: Path, scale: str, device: str, log, caps: bool = False) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "HF_MODULES_CACHE": str(work / "modules")}
    fresh_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    rows, outputs = [], {}
    for name, command in steps(work, scale, device):
        if name == "fresh_process":
            make_standin(work)
        if name == "stage1":
            clean_manifest(work / "audio")
        cap = int(MEMORY_GOALS[name]) if caps and name in MEMORY_GOALS else None
        rows.append(run_step(name, command, work, fresh_env if name == "fresh_process" else env, log, cap))
        text = (work / f"{name}.log").read_text()
        if "RESULT " in text:
            outputs[name] = json.loads(text.rsplit("RESULT ", 1)[1].splitlines()[0])
        if name in DONE_WITH:  # what no later step reads: its disk given back
            shutil.rmtree(work / DONE_WITH[name])
    counts = parameter_counts(work / "merged", work / "stage2")
    return {"steps": rows, "outputs": outputs, "parameters": counts}


def hardware(device: str) -> dict:
    import torch
    import transformers

    from train.weights.precision import hardware as cpu_and_versions

    found = {**cpu_and_versions(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1), "device": device,
             "python": platform.python_version(), "transformers": transformers.__version__, "torch": torch.__version__}  # fmt: skip
    for package in ("peft", "bitsandbytes", "accelerate"):
        found[package] = __import__(package).__version__
    return found


def table(results: dict) -> str:
    lines = ["| step | seconds | peak RSS (GiB) | of it anonymous (GiB) | hard cap (GB) | cgroup peak (GB) | disk written (GB) |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {r['step']} | {r['seconds']:,.0f} | {r['peak_rss_gib']} | {r.get('peak_anonymous_gib', '-')} | "
              f"{r.get('memory_cap_gb', '-')} | {r.get('cgroup_peak_gb', '-')} | {r['disk_written_gb']} |"
              for r in results["steps"]]  # fmt: skip
    counts = results["parameters"]
    lines.append("\nparameters: " + ", ".join(f"{k} {v / 1e9:.3f} B" if v > 1e8 else f"{k} {v / 1e6:.2f} M"
                                              for k, v in counts.items()))  # fmt: skip
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("build/rehearse-7b"))
    parser.add_argument("--scale", choices=("full", "tiny"), default="full")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, help="default bench/rehearse-7b.json (build/rehearse-tiny.json with --scale tiny)")
    parser.add_argument("--keep", action="store_true", help="leave the work folder (tens of GB at full scale)")
    parser.add_argument("--memory_caps", choices=("auto", "on", "off"), default="auto",
                        help="run stage 2, bf16 and NF4 inference each under its memory goal as a hard cgroup limit "
                             "(auto: where this machine lets the process make a memory cgroup)")  # fmt: skip
    args = parser.parse_args(argv)
    caps = args.memory_caps != "off" and MemoryCap.available()
    if args.memory_caps == "on" and not caps:
        parser.error("--memory_caps on: this machine does not let the process make a memory cgroup")
    out = args.out or Path("bench/rehearse-7b.json" if args.scale == "full" else "build/rehearse-tiny.json")
    shutil.rmtree(args.work, ignore_errors=True)
    began = time.time()
    try:
        results = rehearse(args.work, args.scale, args.device, log=lambda row: print(json.dumps(row), flush=True), caps=caps)
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    results.update(scale=args.scale, date=time.strftime("%Y-%m-%d"), wall_seconds=round(time.time() - began),
                   hardware=hardware(args.device))  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(textwrap.dedent(f"""
        {args.scale} scale on {args.device}: every step completed in {results['wall_seconds']:,} s; figures in {out}"""))
    return results


if __name__ == "__main__":
    main()
