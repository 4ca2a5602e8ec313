import Checkpoint
@testable import Engine
@testable import Families
import Foundation
import TestSupport
import VitLensCore
import XCTest

/// EVA-02, EVA-02 CLIP, Perception Encoder (core, spatial), AIMv2 and DINOv3 with a SwiGLU MLP
/// (Tests/Fixtures/make_2025_fixtures.py: timm's own Eva and VisionTransformer in float64) on every
/// attention path and worker split, at the fixtures' 32 px and, for the rotary families, at 48 px
/// (absolute tables resampled as timm's checkpoint_filter_fn does, the rotary grid following the
/// run size): representations within 1e-3·max(1, |ref|), attention within 1e-4.
final class Families2025Tests: XCTestCase {
    struct Expected {
        let family: ModelFamily
        let rotary: RotarySpec?
        var norm = ViTConfig.Norm.layerNorm
        var mlp = "swiglu"
        var attentionNorm = false
        var patchNorm = false
        var given: ModelFamily?
    }

    let expected: [String: Expected] = [
        "eva02": Expected(family: .eva02, rotary: .eva02),
        "eva02clip": Expected(family: .eva02, rotary: .eva02, mlp: "swiglu + inner norm", attentionNorm: true),
        "pecore": Expected(family: .perceptionEncoder, rotary: .perceptionEncoder(trainedGrid: 4), mlp: "plain"),
        "pespatial": Expected(family: .perceptionEncoder, rotary: .perceptionEncoder(trainedGrid: 4), mlp: "plain",
                              given: .perceptionEncoder),
        "aimv2": Expected(family: .aimv2, rotary: nil, norm: .rmsNorm, patchNorm: true),
        "dinov3plus": Expected(family: .dinov3, rotary: .dinov3),
    ]

    func engine(_ name: String, file: String? = nil, size: Int) throws -> ViTEngine {
        let want = expected[name]!
        let ckpt = try CheckpointLoader.loadModel(path: Fixtures.checkpoint(file ?? "family_\(name).safetensors"))
        let config = try ViTConfig.infer(from: ckpt, heads: 2, imageSize: size, family: want.given)
        XCTAssertEqual(config.modelFamily, want.family, name)
        XCTAssertEqual(config.rotary, want.rotary, name)
        XCTAssertEqual(config.norm, want.norm, name)
        XCTAssertEqual(config.mlpSummary, want.mlp, name)
        XCTAssertEqual(config.attentionNorm, want.attentionNorm, name)
        XCTAssertEqual(config.patchNorm, want.patchNorm, name)
        XCTAssertEqual(config.activation, want.mlp == "plain" ? .gelu : .silu, name)
        XCTAssertEqual(config.eps, name.hasPrefix("eva02") ? 1e-6 : 1e-5, name)
        return ViTEngine(weights: try ViTWeights(checkpoint: ckpt, config: config))
    }

    func testEveryPathMatchesTimm() throws {
        for name in expected.keys.sorted() {
            let sizes = name == "aimv2" ? [(32, "", "none")] : [(32, "", "none"), (48, "_size48", "size48")]
            for (size, suffix, input) in sizes {
                try checkEveryPath("\(name) at \(size) px", input: try goldenInput(input, size: size),
                                   golden: "family_\(name)\(suffix)") { try engine(name, size: size) }
            }
        }
    }

    /// SigLIP 2 NaFlex (Tests/Fixtures/make_hf_siglip2_fixtures.py, transformers float64): the
    /// linear patch embedding as a convolution, the position table as trained (32 px), enlarged
    /// (48 px) and reduced (24 px: antialiased) by transformers' bilinear resize; both folders.
    func testSigLIP2NaFlexMatchesTransformers() throws {
        for folder in ["family_hf_siglip2vision", "family_hf_siglip2"] {
            let sizes = [(32, "", "none"), (48, "_size48", "size48"), (24, "_size24", "siglip2_size24")]
            for (size, suffix, input) in sizes {
                let make = { () throws -> ViTEngine in
                    let ckpt = try CheckpointLoader.loadModel(path: Fixtures.checkpoint(folder))
                    XCTAssertEqual(ckpt.layout, .huggingFaceSigLIP2)
                    let config = try ViTConfig.infer(from: ckpt, imageSize: size)
                    XCTAssertEqual(config.modelFamily, .siglip2)
                    XCTAssertEqual(config.activation, .geluTanh)
                    return ViTEngine(weights: try ViTWeights(checkpoint: ckpt, config: config))
                }
                try checkEveryPath("\(folder) at \(size) px", input: try goldenInput(input, size: size),
                                   golden: "family_hf_siglip2\(suffix)", make)
            }
        }
    }

    /// AIMv2 as Hugging Face publishes it (make_hf_aimv2_fixtures.py, transformers float64).
    func testHuggingFaceAIMv2MatchesTransformers() throws {
        let ckpt = try CheckpointLoader.loadModel(path: Fixtures.checkpoint("family_hf_aimv2"))
        XCTAssertEqual(ckpt.layout, .huggingFaceAIMv2)
        let config = try ViTConfig.infer(from: ckpt)
        XCTAssertEqual(config.modelFamily, .aimv2)
        XCTAssertEqual(config.norm, .rmsNorm)
        XCTAssertEqual(config.epsSource, "config.json rms_norm_eps")
        try checkEveryPath("Hugging Face AIMv2", input: try goldenInput("none"), golden: "family_hf_aimv2") {
            ViTEngine(weights: try ViTWeights(checkpoint: ckpt, config: config))
        }
    }

    /// DINOv3 as Hugging Face publishes it (make_hf_dinov3_fixtures.py, transformers float64), with
    /// the plain and the gated MLP.
    func testHuggingFaceDINOv3MatchesTransformers() throws {
        for name in ["hf_dinov3", "hf_dinov3plus"] {
            let ckpt = try CheckpointLoader.loadModel(path: Fixtures.checkpoint("family_\(name)"))
            XCTAssertEqual(ckpt.layout, .huggingFaceDINOv3)
            let config = try ViTConfig.infer(from: ckpt)
            XCTAssertEqual(config.modelFamily, .dinov3)
            XCTAssertEqual(config.swiGLU, name.hasSuffix("plus"))
            XCTAssertFalse(config.keyBias)
            try checkEveryPath(name, input: try goldenInput("none"), golden: "family_\(name)") {
                ViTEngine(weights: try ViTWeights(checkpoint: ckpt, config: config))
            }
        }
    }

    /// The authors' layouts give timm's numbers: EVA-CLIP's `visual.*` names beside a text tower,
    /// Meta's PE `.pt` (with and without `visual.`), Facebook's DINOv3 (the k bias masked), Apple's
    /// AIMv2.
    func testAuthorsLayouts() throws {
        for (file, name, layout) in [
            ("family_eva02clip_evaclip.pt", "eva02clip", Layout.evaCLIP), ("family_pecore_meta.pt", "pecore", .clip),
            ("family_pespatial_meta.pt", "pespatial", .clip),
            ("family_dinov3plus_fb.pth", "dinov3plus", .facebookDINOv3),
            ("family_aimv2_apple.pt", "aimv2", .appleAIMv2), ("family_eva02_mim.pt", "eva02", .evaMIM),
        ] {
            let e = try engine(name, file: file, size: 32)
            XCTAssertEqual(try CheckpointLoader.loadModel(path: Fixtures.checkpoint(file)).layout, layout, file)
            try checkEveryPath(file, input: try goldenInput("none"), golden: "family_\(name)") { e }
        }
        // EVA's stored rotary buffers are checked against the rotation vitlens builds.
        let mim = try CheckpointLoader.loadModel(path: Fixtures.checkpoint("family_eva02_mim.pt"))
        XCTAssertNoThrow(try ViTConfig.infer(from: mim, heads: 2))
        var tampered = mim.tensors
        var cosines = try mim.tensors[ViTKeys.ropeCos]!.floats(name: "cos")
        cosines[5 * 8 + 3] += 0.01
        tampered[ViTKeys.ropeCos] = RawTensor(shape: mim.tensors[ViTKeys.ropeCos]!.shape, floats: cosines)
        XCTAssertThrowsError(try ViTConfig.infer(from: mim.replacingTensors(tampered), heads: 2)) { e in
            XCTAssertTrue("\(e)".contains("rope.freqs_cos[5, 3]"), "\(e)")
        }
        // Facebook's k bias is stored nonzero and masked: the mask applied gives zeros.
        let fb = try CheckpointLoader.loadModel(path: Fixtures.checkpoint("family_dinov3plus_fb.pth"))
        XCTAssertTrue(fb.keyBiasAbsent)
        let bias = try fb.tensors[ViTKeys.block(0, .qkvBias)]!.floats(name: "qkv bias")
        XCTAssertEqual(Array(bias[16..<32]), [Float](repeating: 0, count: 16))
    }

    /// `inspect`'s parameter count equals timm's for every 2025 fixture (make_2025_fixtures.py:
    /// its named parameters without the classifier and the pooling head), learned rotary
    /// frequencies included; and every family has exactly one definition in the registry.
    func testParameterCountsAndRegistry() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.golden("family_2025_parameters.json")))
        let counts = try JSONSerialization.jsonObject(with: data) as! [String: Int]
        XCTAssertEqual(counts.count, 7)
        for (name, count) in counts {
            let ckpt = try CheckpointLoader.loadModel(path: Fixtures.checkpoint("family_\(name).safetensors"))
            let config = try ViTConfig.infer(from: ckpt, heads: 2, imageSize: 32,
                                             family: name == "pespatial" ? .perceptionEncoder : nil)
            XCTAssertEqual(config.parameterCount, count, name)
        }
        for family in ModelFamily.allCases {
            XCTAssertEqual(FamilyDefinition.registry.filter { $0.family == family }.count, 1, family.rawValue)
        }
    }

    /// The FLOPs `bench` divides by count every product once: 2 per multiply-add of each linear
    /// layer's weights over every token (SwiGLU's fc1 holding gate and up), the attention's q·kᵀ and
    /// P·V, and the patch embedding — counted here from the loaded weights' shapes.
    func testFlopsCountEveryProduct() throws {
        for name in ["eva02", "aimv2", "pecore"] {
            let ckpt = try CheckpointLoader.loadModel(path: Fixtures.checkpoint("family_\(name).safetensors"))
            let c = try ViTConfig.infer(from: ckpt, heads: 2, imageSize: 32)
            let w = try ViTWeights(checkpoint: ckpt, config: c)
            let T = Double(c.tokens)
            var flops = 2 * Double(c.patches) * Double(w.patchW.count)
            for b in w.blocks {
                flops += 2 * T * Double(b.qkvW.count + b.projW.count + b.fc1W.count + b.fc2W.count)
                flops += 2 * 2 * T * T * Double(c.dim)
            }
            XCTAssertEqual(c.flopsPerImage, flops, accuracy: 1e-9 * flops, name)
        }
    }

    /// The kernels against their definitions in float64: RMSNorm x/√(mean(x²) + eps)·w, and SwiGLU
    /// silu(g + b)·(u + b') packed from rows of (gate | up).
    func testRMSNormAndSwiGLUKernels() throws {
        let rows = 3, c = 20
        let x = (0..<(rows * c)).map { Float(sin(Double($0) * 0.37) * 3) }
        let w = Tensor(shape: [c], values: (0..<c).map { Float(1 + 0.1 * Double($0 % 5)) })
        var out = [Float](repeating: 0, count: rows * c)
        rmsNormRows(&out, x, w, rows: rows, eps: 1e-5)
        for r in 0..<rows {
            let row = x[(r * c)..<((r + 1) * c)].map(Double.init)
            let inv = 1 / (row.map { $0 * $0 }.reduce(0, +) / Double(c) + 1e-5).squareRoot()
            for i in 0..<c {
                XCTAssertEqual(Double(out[r * c + i]), row[i] * inv * Double(w.data[i]), accuracy: 1e-5)
            }
        }
        let f = 13
        var h = (0..<(rows * 2 * f)).map { Float(cos(Double($0) * 0.53) * 12) }
        let gateInput = h
        let b = Tensor(shape: [2 * f], values: (0..<(2 * f)).map { Float(0.1 * Double($0 % 7) - 0.3) })
        biasSwiGLURows(&h, b, rows: rows)
        for r in 0..<rows {
            for i in 0..<f {
                let g = Double(gateInput[r * 2 * f + i] + b.data[i])
                let u = Double(gateInput[r * 2 * f + f + i] + b.data[f + i])
                let want = g / (1 + exp(-g)) * u
                XCTAssertEqual(Double(h[r * f + i]), want, accuracy: 2e-6 * max(1, abs(want)), "row \(r), \(i)")
            }
        }
    }

    /// What the tensors cannot tell is asked, not guessed: PE spatial in Meta's names (no
    /// attention-pooling head, no final norm) is CLIP's tensors; the family given settles it, a
    /// family the tensors contradict is refused.
    func testFamiliesNeverGuessed() throws {
        let spatial = try CheckpointLoader.loadModel(path: Fixtures.checkpoint("family_pespatial_meta.pt"))
        XCTAssertThrowsError(try ViTConfig.infer(from: spatial, heads: 2)) { error in
            guard case let FamilyError.ambiguous(_, candidates, _)? = error as? FamilyError else {
                return XCTFail("\(error)") }
            XCTAssertEqual(candidates, [.clip, .perceptionEncoder])
        }
        XCTAssertEqual(try ViTConfig.infer(from: spatial, heads: 2, family: .perceptionEncoder).modelFamily,
                       .perceptionEncoder)
        let aim = try CheckpointLoader.loadModel(path: Fixtures.checkpoint("family_aimv2.safetensors"))
        for wrong in [ModelFamily.vitGap, .siglip, .eva02] {
            XCTAssertThrowsError(try ViTConfig.infer(from: aim, family: wrong)) { error in
                XCTAssertTrue(error is FamilyError, "\(wrong): \(error)")
            }
        }
        let eva = try CheckpointLoader.loadModel(path: Fixtures.checkpoint("family_eva02.safetensors"))
        XCTAssertThrowsError(try ViTConfig.infer(from: eva, family: .vit))
        XCTAssertThrowsError(try ViTConfig.infer(from: eva, family: .dinov3))
    }
}
