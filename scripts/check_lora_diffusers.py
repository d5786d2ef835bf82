#!/usr/bin/env python3
"""The diffusers half of the trainer's LoRA check (issue 12, "a LoRA the trainer wrote, loaded into diffusers + peft,
gives the same UNet output as this library to 1e-4").

First run the TypeScript half on the same machine (it trains a LoRA with TcdDistiller on a tiny SDXL-shaped folder
and records this library's UNet output with that LoRA file):

    npx tsx scripts/export_lora_parity.ts out/lora-parity
    python scripts/check_lora_diffusers.py out/lora-parity [--device cpu|cuda] [--tol 1e-4]

This script loads <dir>/model/unet with diffusers' UNet2DConditionModel, attaches <dir>/run/pytorch_lora_weights.safetensors
through diffusers' peft integration (load_lora_adapter with the 'unet.' prefix and the file's lora_adapter_metadata,
i.e. what StableDiffusionXLPipeline.load_lora_weights does for the UNet), evaluates it in float32 on the inputs of
<dir>/parity.safetensors and compares with this library's output there. It also checks that the adapter is really
applied (the output with adapters disabled must match output_base and differ from output). Exit code 0 on success.
Needs torch, diffusers (>= 0.31), peft and safetensors.
"""
import argparse
import json
import os
import sys

import torch
from diffusers import UNet2DConditionModel
from safetensors import safe_open
from safetensors.torch import load_file


def rel_max_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="output folder of scripts/export_lora_parity.ts")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tol", type=float, default=1e-4, help="max |got - want| / max |want| (default 1e-4)")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    lora_path = os.path.join(args.dir, "run", "pytorch_lora_weights.safetensors")
    with safe_open(lora_path, "pt") as f:
        meta = f.metadata() or {}
    config = json.loads(meta.get("lora_adapter_metadata", "{}"))
    print(f"LoRA {lora_path}: r {config.get('unet.r')}, lora_alpha {config.get('unet.lora_alpha')}, "
          f"{len(config.get('unet.target_modules', []))} target modules")

    unet = UNet2DConditionModel.from_pretrained(os.path.join(args.dir, "model", "unet"), torch_dtype=torch.float32)
    unet = unet.to(args.device).eval()
    unet.load_lora_adapter(os.path.dirname(lora_path), weight_name=os.path.basename(lora_path), prefix="unet",
                           adapter_name="tcd")
    n_lora = sum(1 for n, _ in unet.named_parameters() if "lora_" in n)
    n_file = len(load_file(lora_path))
    print(f"peft attached {n_lora} LoRA tensors; the file holds {n_file}")
    # The file's alpha reaches peft only through lora_adapter_metadata (diffusers >= 0.35 reads it); older versions
    # fall back to alpha = r, which would be a wrong scale here (the export uses alpha = 2r on purpose).
    want_scale = float(config.get("unet.lora_alpha", 1)) / float(config.get("unet.r", 1))
    scales = {round(m.scaling["tcd"], 6) for m in unet.modules() if isinstance(getattr(m, "scaling", None), dict) and "tcd" in m.scaling}
    print(f"peft scaling {sorted(scales)}, expected alpha/r = {want_scale}")
    if scales != {round(want_scale, 6)}:
        print("FAIL: this diffusers version did not apply the file's lora_alpha (needs a diffusers that reads "
              "lora_adapter_metadata, >= 0.35)")
        return 1

    t = {k: v.to(args.device) for k, v in load_file(os.path.join(args.dir, "parity.safetensors")).items()}

    def run() -> torch.Tensor:
        with torch.no_grad():
            return unet(t["sample"], t["timestep"], encoder_hidden_states=t["encoder_hidden_states"],
                        added_cond_kwargs={"text_embeds": t["text_embeds"], "time_ids": t["time_ids"]}).sample.cpu()

    out = run()
    unet.disable_adapters()
    base = run()
    unet.enable_adapters()

    want, want_base = t["output"].cpu(), t["output_base"].cpu()
    err = rel_max_err(out, want)
    err_base = rel_max_err(base, want_base)
    effect = (want - want_base).abs().max().item()
    print(f"UNet + LoRA vs this library: {err:.3e} (max|got - want| / max|want|, tolerance {args.tol})")
    print(f"UNet without LoRA vs this library: {err_base:.3e}")
    print(f"the LoRA changes the output by up to {effect:.3e}")
    ok = n_lora == n_file and err <= args.tol and err_base <= args.tol and effect > 100 * args.tol * want.abs().max().item()
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
