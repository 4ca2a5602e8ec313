"""MAE as Hugging Face publishes it, with float64 goldens from transformers: a
`ViTMAEForPreTraining` folder (encoder under `vit.`, decoder ignored by vitlens) and a
`ViTMAEModel` folder (saved by transformers 5 without the `vit.` prefix), 2 layers, width 16,
2 heads, 32x32 images, patch 8. The reference runs the encoder unmasked (mask_ratio 0, the
identity permutation as noise): representation i is layer i's `layernorm_before` output, the
last `layernorm` on every token, attention the eager probabilities.
Run from the repository root: python3 Tests/Fixtures/make_hf_mae_fixtures.py."""
import numpy as np
import torch
from transformers import ViTMAEConfig, ViTMAEForPreTraining, ViTMAEModel

import make_fixtures as F
import make_hf_dinov2_fixtures as D


def main():
    x = F.preprocess(F.list_images(F.out("images", "none")), False)
    cfg = ViTMAEConfig(hidden_size=F.DIM, num_hidden_layers=F.DEPTH, num_attention_heads=F.HEADS, intermediate_size=2 * F.DIM,
                       image_size=F.IMG, patch_size=F.PATCH, mask_ratio=0.0, decoder_hidden_size=8, decoder_num_hidden_layers=1,
                       decoder_num_attention_heads=2, decoder_intermediate_size=16)
    cfg._attn_implementation = "eager"
    pre = ViTMAEForPreTraining(cfg)
    torch.manual_seed(51)
    with torch.no_grad():
        for k, v in pre.state_dict().items():
            if "position_embeddings" in k or v.dtype != torch.float32:
                continue  # MAE's fixed sin-cos positions stay as they are
            if k.endswith("layernorm_before.weight") or k.endswith("layernorm_after.weight") or k.endswith("layernorm.weight"):
                v.copy_(1 + 0.2 * torch.randn_like(v))
            elif k.endswith("bias") or k.endswith("cls_token"):
                v.copy_(0.3 * torch.randn_like(v))
            else:
                v.copy_(torch.randn_like(v) * (1.5 / v[0].numel() ** 0.5))
    pre.save_pretrained(F.out("checkpoints", "family_hf_mae_pretraining"))
    enc = ViTMAEModel(cfg)
    enc.load_state_dict(pre.vit.state_dict())
    enc.save_pretrained(F.out("checkpoints", "family_hf_mae"))
    enc = enc.double().eval()
    normed = []
    for layer in getattr(enc, "layers", None) or enc.encoder.layer:  # transformers 5 flattens the encoder
        layer.layernorm_before.register_forward_hook(lambda m, i, o: normed.append(o))
    P = (F.IMG // F.PATCH) ** 2
    with torch.no_grad():
        out = enc(pixel_values=x.double(), noise=torch.arange(P, dtype=torch.float64).expand(x.shape[0], P), output_attentions=True)
    normed.append(out.last_hidden_state)
    f32 = lambda ts: torch.stack(list(ts)).float().numpy()
    np.save(F.out("golden", "family_hf_mae_features.npy"), f32(normed))
    np.save(F.out("golden", "family_hf_mae_attention.npy"), f32(out.attentions))
    print("features", f32(normed).shape, "attention", f32(out.attentions).shape)


if __name__ == "__main__":
    main()
