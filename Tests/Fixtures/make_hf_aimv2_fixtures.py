"""AIMv2 as Hugging Face publishes it, with float64 goldens from transformers: an Aimv2VisionModel
folder (RMSNorm on the patch embeddings and in every layer, q/k/v and the SwiGLU's gate/up/down
projections without biases, a learned position table, the attention-pooling head kept and
ignored by vitlens). 2 layers, width 16, 2 heads, patch 8, 32x32 images. Representation i is
layer i's first RMSNorm output, the last one the final RMSNorm on every token; attention the
eager probabilities. Run from the repository root: python3 Tests/Fixtures/make_hf_aimv2_fixtures.py."""
import numpy as np
import torch
from transformers import Aimv2VisionConfig, Aimv2VisionModel

import make_fixtures as F

f32 = lambda ts: torch.stack(list(ts)).float().numpy()


def randomise(model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if "norm" in k:
                v.copy_(1 + 0.2 * torch.randn_like(v))
            elif k.endswith("bias") or "position_embedding" in k or "cls_token" in k:
                v.copy_(0.3 * torch.randn_like(v))
            else:
                v.copy_(torch.randn_like(v) * (1.5 / v[0].numel() ** 0.5))


def transformers_reference(model, norms, **inputs):
    """transformers in float64: the outputs of `norms(model)` (each layer's first norm), then
    last_hidden_state (the final norm on every token), and the eager attention probabilities."""
    model = model.double().eval()
    normed = []
    hooks = [n.register_forward_hook(lambda mod, i, o: normed.append(o)) for n in norms(model)]
    with torch.no_grad():
        out = model(**inputs, output_attentions=True)
    for h in hooks:
        h.remove()
    normed.append(out.last_hidden_state)
    return f32(normed), f32(out.attentions)


def main():
    x = F.preprocess(F.list_images(F.out("images", "none")), False)
    cfg = Aimv2VisionConfig(hidden_size=F.DIM, intermediate_size=44, num_hidden_layers=F.DEPTH,
                            num_attention_heads=F.HEADS, patch_size=F.PATCH, image_size=F.IMG)
    cfg._attn_implementation = "eager"
    m = Aimv2VisionModel(cfg)
    randomise(m, 59)
    m.save_pretrained(F.out("checkpoints", "family_hf_aimv2"))
    feats, attn = transformers_reference(m, lambda m: [layer.rms_norm1 for layer in m.encoder.layers],
                                         pixel_values=x.double())
    np.save(F.out("golden", "family_hf_aimv2_features.npy"), feats)
    np.save(F.out("golden", "family_hf_aimv2_attention.npy"), attn)
    print("hf_aimv2", feats.shape, attn.shape)


if __name__ == "__main__":
    main()
