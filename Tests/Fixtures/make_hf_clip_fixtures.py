"""Tiny Hugging Face CLIP folders and their float64 goldens, made with transformers: a
CLIPVisionModel saved by transformers 5 (keys without the `vision_model.` prefix) and a full
CLIPModel (both towers; the image tower under `vision_model.`), 2 layers, width 16, 2 heads,
32x32 images, patch 8, QuickGELU, eps 1e-5. The reference is transformers itself in float64:
representation i is `encoder.layers[i].layer_norm1`'s output, the last one `post_layernorm`
applied to every token of the last hidden state (vitlens's definition; transformers applies it
to the class token only), attention the eager softmax probabilities.
Run from the repository root: python3 Tests/Fixtures/make_hf_clip_fixtures.py."""
import numpy as np
import torch
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig, CLIPVisionModel

import make_fixtures as F

VISION = dict(hidden_size=F.DIM, intermediate_size=2 * F.DIM, num_hidden_layers=F.DEPTH, num_attention_heads=F.HEADS,
              image_size=F.IMG, patch_size=F.PATCH, hidden_act="quick_gelu", layer_norm_eps=1e-5)


def randomise(model, seed, layer_scale=None, extra_norms=()):
    """Seeded weights far from the defaults: norm weights near 1, LayerScale near 0.5, biases,
    tokens and positions of size 0.3, matrices of unit gain (also used for the DINOv2 fixtures)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if v.dtype != torch.float32:
                continue
            if k.endswith("norm1.weight") or k.endswith("norm2.weight") or "layrnorm.weight" in k or "layernorm.weight" in k or k in extra_norms:
                v.copy_(1 + 0.2 * torch.randn_like(v))
            elif layer_scale and layer_scale in k:
                v.copy_(0.5 + 0.4 * torch.randn_like(v))
            elif k.endswith("bias") or k.endswith("class_embedding") or "position_embedding" in k or "token" in k:
                v.copy_(0.3 * torch.randn_like(v))
            else:
                v.copy_(torch.randn_like(v) * (1.5 / v[0].numel() ** 0.5))


def reference(vision, x):
    vision = vision.double().eval()
    normed, probs = [], []
    tower = getattr(vision, "vision_model", vision)  # transformers 5 flattens CLIPVisionModel
    for layer in tower.encoder.layers:
        layer.layer_norm1.register_forward_hook(lambda m, i, o: normed.append(o))
    with torch.no_grad():
        out = vision(pixel_values=x.double(), output_attentions=True)
    with torch.no_grad():
        normed.append(tower.post_layernorm(out.last_hidden_state))
    probs = out.attentions
    f32 = lambda ts: torch.stack(list(ts)).float().numpy()
    return f32(normed), f32(probs)


def main():
    x = F.preprocess(F.list_images(F.out("images", "none")), False)
    cfg = CLIPVisionConfig(**VISION)
    cfg._attn_implementation = "eager"
    vision = CLIPVisionModel(cfg)
    randomise(vision, 31)
    vision.save_pretrained(F.out("checkpoints", "family_hf_clipvision"))
    full = CLIPModel(CLIPConfig(text_config=CLIPTextConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                                            num_attention_heads=2, vocab_size=50, max_position_embeddings=7).to_dict(),
                                vision_config=CLIPVisionConfig(**VISION).to_dict(), projection_dim=8))
    full.vision_model.load_state_dict(getattr(vision, "vision_model", vision).state_dict())
    full.save_pretrained(F.out("checkpoints", "family_hf_clip"))
    feats, attn = reference(vision, x)
    np.save(F.out("golden", "family_hf_clip_features.npy"), feats)
    np.save(F.out("golden", "family_hf_clip_attention.npy"), attn)
    print("features", feats.shape, "attention", attn.shape)


if __name__ == "__main__":
    main()
