import Foundation
import TestSupport
import XCTest

/// `vitlens similarity`: every measure against the peers' own code (goldens by
/// scripts/make_similarity_goldens.py), closed forms, shards, refusals.
final class SimilarityCLITests: XCTestCase {
    let fx = Fixtures.path("similarity")
    var tmp = ""

    override func setUpWithError() throws {
        tmp = NSTemporaryDirectory() + "vitlens-sim-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }

    func run(_ args: [String], environment: [String: String] = [:]) -> (status: Int32, signalled: Bool,
                                                                       stdout: String, stderr: String) {
        runProcess(CLITests.binary, args, environment: environment)
    }

    /// similarity.json's matrices of the first pair: measure → [[value]].
    func matrices(_ dir: String) throws -> [String: [[Double]]] {
        let j = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/similarity.json")))
            as! [String: Any]
        let pair = (j["pairs"] as! [[String: Any]])[0], ms = pair["measures"] as! [String: [String: Any]]
        return ms.mapValues { ($0["value"] as! [[Any]]).map { $0.map { ($0 as? Double) ?? .nan } } }
    }

    func golden(_ config: String) throws -> [String: [[Double?]]] {
        let j = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fx + "/golden.json")))
            as! [String: Any]
        return (j[config] as! [String: [[Any]]]).mapValues { $0.map { $0.map { $0 as? Double } } }
    }

    func assertClose(_ got: [[Double]]?, _ want: [[Double?]]?, _ tol: Double, _ what: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        guard let got, let want else { return XCTFail("\(what): missing", file: file, line: line) }
        XCTAssertEqual(got.count, want.count, what, file: file, line: line)
        var worst = 0.0
        for (g, w) in zip(got.joined(), want.joined()) { if let w { worst = max(worst, abs(g - w)) } }
        XCTAssertLessThanOrEqual(worst, tol, "\(what): max |vitlens − peer| = \(worst)", file: file, line: line)
    }

    func testEveryMeasureEqualsItsPeer() throws {
        let g = try golden("default")
        let out = tmp + "/all"
        let r = run(["similarity", fx + "/a.npy", fx + "/b.npy", "--batch", "16", "--out", out, "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        // N = 48 < 10·D: the CCA warning.
        XCTAssertTrue(r.stderr.contains("warning: cca, pwcca: N = 48 samples for 10 channels"), r.stderr)
        let m = try matrices(out)
        // Peers in float64 (mknn: platonic-rep accumulates its mask in float32).
        for name in ["cka-debiased", "rbf-cka", "procrustes", "cca", "svcca", "pwcca", "rsa"] {
            assertClose(m[name], g[name], 1e-10, name)
        }
        assertClose(m["mknn"], g["mknn"], 1e-6, "mknn")
        // google/svcca's own compute_pwcca, unmodified, fails with D_X > D_Y (10 > 7); where it runs it weights
        // by the rotated coefficients, not the variates: vitlens follows the paper.
        XCTAssertTrue(g["pwcca_google_unmodified"]!.joined().allSatisfy { $0 == nil })
        for (method, key) in [("kendall-tau-a", "rsa-kendall-tau-a"), ("pearson", "rsa-pearson"), ("cosine", "rsa-cosine")] {
            let o = tmp + "/" + method
            XCTAssertEqual(run(["similarity", fx + "/a.npy", fx + "/b.npy", "--measures", "rsa", "--rsa-compare", method,
                                "--out", o, "--quiet"]).status, 0)
            assertClose(try matrices(o)["rsa"], g[key], 1e-10, key)
        }
        // Alone, procrustes sums only the scatters' diagonals (and cka-debiased no CCA factors): the same numbers.
        for name in ["procrustes", "cka-debiased"] {
            let o = tmp + "/alone-" + name
            XCTAssertEqual(run(["similarity", fx + "/a.npy", fx + "/b.npy", "--measures", name, "--out", o,
                                "--quiet"]).status, 0)
            assertClose(try matrices(o)[name], g[name], 1e-10, name + " alone")
        }
        let g2 = try golden("knn5_clamp0.9_t1_keep0.9")
        let o2 = tmp + "/settings"
        XCTAssertEqual(run(["similarity", fx + "/a.npy", fx + "/b.npy", "--measures", "mknn,rbf-cka,svcca",
                            "--knn", "5", "--clamp-quantile", "0.9", "--rbf-t", "1", "--svcca-keep", "0.9",
                            "--out", o2, "--quiet"]).status, 0)
        let m2 = try matrices(o2)
        assertClose(m2["rbf-cka"], g2["rbf-cka"], 1e-10, "rbf-cka t=1")
        assertClose(m2["svcca"], g2["svcca"], 1e-10, "svcca keep 0.9")
        assertClose(m2["mknn"], g2["mknn"], 1e-6, "mknn k=5 clamp 0.9")
        // The files a person and a script read.
        let csv = try String(contentsOfFile: out + "/similarity.csv", encoding: .utf8)
        XCTAssertTrue(csv.hasPrefix("measure,layer_a,layer_b,value,ci_low,ci_high\n"))
        XCTAssertTrue(csv.split(separator: "\n")[1].hasSuffix(",nan,nan"), "no --bootstrap: no interval")
        XCTAssertEqual(csv.split(separator: "\n").count, 1 + 9 * 3 * 4)
        let best = try String(contentsOfFile: out + "/best_match.csv", encoding: .utf8)
        XCTAssertEqual(best.split(separator: "\n").count, 1 + 9 * 4)
        // best_match: for each layer of B, the arg-max over A's layers (arg-min of the procrustes angle).
        for line in best.split(separator: "\n").dropFirst() {
            let f = line.split(separator: ","), name = String(f[0]), j = Int(f[1])!, i = Int(f[2])!
            let column = m[name]!.map { $0[j] }
            let want = name == "procrustes" ? column.indices.min { column[$0] < column[$1] }!
                : column.indices.max { column[$0] < column[$1] }!
            XCTAssertEqual(i, want, String(line))
        }
        for f in ["similarity_grid.svg", "best_match.svg", "similarity_procrustes.svg", "index.html"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/" + f), f)
        }
        let html = try String(contentsOfFile: out + "/index.html", encoding: .utf8)
        XCTAssertTrue(html.contains("netrep LinearMetric"))
    }

    /// Closed forms: a model against itself, and against a rotated, scaled, shifted copy of itself.
    func testClosedForms() throws {
        let a = try NpyArray(path: fx + "/a.npy")
        let (l, n, d) = (a.shape[0], a.shape[1], a.shape[2])
        // Q: a rotation of the D channels (Givens rotations), then ×3 and + 5.
        var rotated = a.values
        for layer in 0..<l {
            for i in 0..<n {
                var row = Array(rotated[((layer * n + i) * d)..<((layer * n + i + 1) * d)])
                for k in 0..<(d - 1) {
                    let (c, s) = (cos(0.3 + Double(k)), sin(0.3 + Double(k)))
                    (row[k], row[k + 1]) = (c * row[k] - s * row[k + 1], s * row[k] + c * row[k + 1])
                }
                for k in 0..<d { rotated[(layer * n + i) * d + k] = 3 * row[k] + 5 }
            }
        }
        try writeNpy(tmp + "/rot.npy", shape: a.shape, values: rotated)
        let out = tmp + "/rot"
        let r = run(["similarity", fx + "/a.npy", tmp + "/rot.npy", "--measures",
                     "cka,cka-debiased,procrustes,cca,svcca,pwcca,rbf-cka", "--batch", "16", "--out", out, "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let m = try matrices(out)
        for i in 0..<l {
            XCTAssertEqual(m["procrustes"]![i][i], 0, accuracy: 1e-3, "procrustes θ of a rotated copy")
            for name in ["cka", "cka-debiased", "cca", "svcca", "pwcca", "rbf-cka"] {
                XCTAssertEqual(m[name]![i][i], 1, accuracy: 1e-5, "\(name) of a rotated, scaled copy")
            }
        }
        // Itself: every measure at its identity value on the diagonal (mknn, rsa exactly 1).
        let s = tmp + "/self"
        XCTAssertEqual(run(["similarity", fx + "/a.npy", "--batch", "16", "--out", s, "--quiet"]).status, 0)
        let ms = try matrices(s)
        for i in 0..<l {
            XCTAssertEqual(ms["mknn"]![i][i], 1)
            XCTAssertEqual(ms["rsa"]![i][i], 1, accuracy: 1e-12)
            XCTAssertEqual(ms["procrustes"]![i][i], 0, accuracy: 1e-6)
        }
        // σ → ∞: the RBF kernel tends to 1 − ‖x−y‖²/(2σ²), whose centred form is the linear kernel's: RBF CKA → biased
        // linear CKA (Kornblith et al. 2019). t = 1000 against a float64 linear CKA computed here.
        let t = tmp + "/wide"
        XCTAssertEqual(run(["similarity", fx + "/a.npy", fx + "/b.npy", "--measures", "rbf-cka", "--rbf-t", "1000",
                            "--out", t, "--quiet"]).status, 0)
        let b = try NpyArray(path: fx + "/b.npy")
        let wide = try matrices(t)["rbf-cka"]!
        for i in 0..<l { for j in 0..<b.shape[0] {
            let x = layer(a, i), y = layer(b, j)
            XCTAssertEqual(wide[i][j], linearCKA(x, y, n: n), accuracy: 1e-5, "σ → ∞ at (\(i), \(j))")
        } }
    }

    func layer(_ a: NpyArray, _ l: Int) -> [[Double]] {
        let n = a.shape[1], d = a.shape[2]
        return (0..<n).map { i in Array(a.values[((l * n + i) * d)..<((l * n + i + 1) * d)]) }
    }

    /// Biased linear CKA ‖X̃ᵀỸ‖²_F / (‖X̃ᵀX̃‖_F ‖ỸᵀỸ‖_F), plainly.
    func linearCKA(_ x: [[Double]], _ y: [[Double]], n: Int) -> Double {
        func centre(_ m: [[Double]]) -> [[Double]] {
            let d = m[0].count
            let mean = (0..<d).map { c in m.reduce(0) { $0 + $1[c] } / Double(n) }
            return m.map { r in (0..<d).map { r[$0] - mean[$0] } }
        }
        func cross(_ p: [[Double]], _ q: [[Double]]) -> Double {
            var s = 0.0
            for i in 0..<p[0].count { for j in 0..<q[0].count {
                var v = 0.0
                for k in 0..<n { v += p[k][i] * q[k][j] }
                s += v * v
            } }
            return s
        }
        let xc = centre(x), yc = centre(y)
        return cross(xc, yc) / (cross(xc, xc).squareRoot() * cross(yc, yc).squareRoot())
    }

    func testShardsMergeToTheSingleRunAndAuto() throws {
        let args = ["similarity", fx + "/a.npy", fx + "/b.npy", "--measures", "cka,cka-debiased,procrustes,cca,svcca,pwcca",
                    "--batch", "8"]
        let single = tmp + "/single"
        XCTAssertEqual(run(args + ["--out", single, "--quiet"]).status, 0)
        var dirs: [String] = []
        for i in 0..<3 {
            let d = tmp + "/shard\(i)"
            let r = run(args + ["--shard", "auto", "--out", d, "--quiet"],
                        environment: ["SLURM_ARRAY_TASK_ID": "\(10 + i)", "SLURM_ARRAY_TASK_MIN": "10",
                                      "SLURM_ARRAY_TASK_MAX": "12"])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(FileManager.default.fileExists(atPath: d + "/sums-0.f64"))
            dirs.append(d)
        }
        let merged = tmp + "/merged"
        let r = run(["merge"] + dirs.reversed() + ["--out", merged, "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let a = try matrices(single), b = try matrices(merged)
        XCTAssertEqual(Set(a.keys), Set(b.keys))
        for (k, v) in a {
            assertClose(b[k], v.map { $0.map(Optional.some) }, k == "cka" ? 0 : 1e-12, "merged \(k)")
        }
    }

    func testRefusals() throws {
        let base = ["similarity", fx + "/a.npy", fx + "/b.npy"]
        for (extra, says) in [
            (["--measures", "mknn", "--shard", "0/2"], "mknn compare every image with every other and cannot be sharded"),
            (["--measures", "nonsense"], "'nonsense' is not a measure"),
            (["--layers", "7"], "--layers 7:"),
            (["--knn", "60", "--measures", "mknn"], "--knn 60"),
            (["--measures", "rsa", "--tokens", "patches"], "--tokens patches: rsa need one vector per image"),
        ] {
            let r = run(base + extra + ["--out", tmp + "/x"])
            XCTAssertEqual(r.status, 64, "\(extra): \(r.stderr)")
            XCTAssertTrue(r.stderr.hasPrefix("error: ") && r.stderr.contains(says), "\(extra): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        }
        // Rank-deficient CCA: 6 images of 10 channels, named by layer; nothing written.
        let a = try NpyArray(path: fx + "/a.npy")
        var small: [Double] = []
        for l in 0..<a.shape[0] { small += a.values[(l * 480)..<(l * 480 + 60)] }
        try writeNpy(tmp + "/small.npy", shape: [a.shape[0], 6, 10], values: small)
        let r = run(["similarity", tmp + "/small.npy", "--measures", "cca", "--out", tmp + "/cca"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("small.npy: layer 0 has centred features of rank 5 < width 10"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp + "/cca"))
        // A layer constant over the images.
        var flat = a.values
        for i in 0..<(48 * 10) { flat[i] = Double(i % 10) }
        try writeNpy(tmp + "/const.npy", shape: a.shape, values: flat)
        let c = run(["similarity", tmp + "/const.npy", fx + "/a.npy", "--measures", "procrustes", "--out", tmp + "/c"])
        XCTAssertEqual(c.status, 1)
        XCTAssertTrue(c.stderr.contains("const.npy: layer 0 is the same for every image"), c.stderr)
        // The Gram measures' scratch file cannot be made: one line naming the folder, nothing written.
        let t = run(base + ["--measures", "rsa", "--out", tmp + "/t"], environment: ["TMPDIR": tmp + "/no-such-dir"])
        XCTAssertEqual(t.status, 1)
        XCTAssertEqual(t.stderr, "error: scratch file in \(tmp)/no-such-dir: No such file or directory\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp + "/t"))
    }

    func testBootstrapIntervals() throws {
        let out = tmp + "/boot"
        let args = ["similarity", fx + "/a.npy", fx + "/b.npy", "--measures", "procrustes,mknn,rsa,cka",
                    "--bootstrap", "40", "--batch", "8", "--quiet"]
        XCTAssertEqual(run(args + ["--out", out]).status, 0)
        let csv = try String(contentsOfFile: out + "/similarity.csv", encoding: .utf8)
        XCTAssertTrue(csv.hasPrefix("measure,layer_a,layer_b,value,ci_low,ci_high\n"))
        var widths = 0
        for line in csv.split(separator: "\n").dropFirst() {
            let f = line.split(separator: ","), lo = Double(f[4])!, hi = Double(f[5])!
            XCTAssertLessThanOrEqual(lo, hi, String(line))
            if hi > lo { widths += 1 }
        }
        XCTAssertGreaterThan(widths, 30)
        // Seeded: the same intervals again.
        XCTAssertEqual(run(args + ["--out", tmp + "/boot2"]).status, 0)
        XCTAssertEqual(csv, try String(contentsOfFile: tmp + "/boot2/similarity.csv", encoding: .utf8))
    }
}
