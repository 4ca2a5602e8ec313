import Analysis
import Foundation

/// A probe report: per model, train and test accuracy for each number of blocks kept.
public struct ProbeResult {
    public struct Row {
        public var layersKept: Int
        public var train: Double
        public var test: Double
        /// The test accuracy's 95 % Wilson interval (NaN: not known).
        public var testLow = Double.nan, testHigh = Double.nan
        var extra: [(String, JSONValue)] = []
        public init(layersKept: Int, train: Double, test: Double) {
            self.layersKept = layersKept
            self.train = train
            self.test = test
        }
        /// With the Wilson interval of `test` on `n` test images.
        init(layersKept: Int, train: Double, test: Double, testImages n: Int) {
            self.init(layersKept: layersKept, train: train, test: test)
            (testLow, testHigh) = wilsonInterval(correct: Int((test * Double(n)).rounded()), of: n)
        }
        init(layersKept: Int, train: Double, test: Double, extra: [(String, JSONValue)]) {
            self.init(layersKept: layersKept, train: train, test: test)
            self.extra = extra
        }
    }
    /// In argument order: (display name, rows by depth).
    public var models: [(name: String, rows: [Row])]
    /// The models, dataset and definitions (nil for a folder without a readable probe.json).
    public var setup: ProbeSetup?
    /// Train and test images the accuracies come from, and the largest class's share of the test set.
    public var imagesUsed: (train: Int, test: Int)?
    public var chance: Double?
    /// probe.json as written or as read (an empty object for a CSV-only folder).
    public private(set) var json: JSONValue
    /// Whether probe.csv has a leading `model` column (several models).
    var modelColumn: Bool

    public static let files = ["probe.csv", "probe.json"]

    public func write(to out: OutputDirectory) throws -> [String] {
        var csv = CSVTable(header: (modelColumn ? ["model"] : []) + ["layers_kept", "train_accuracy", "test_accuracy",
                                                                     "test_accuracy_ci_low", "test_accuracy_ci_high"])
        for (name, rows) in models {
            for r in rows {
                csv.append(
                    (modelColumn ? [name] : [])
                    + ["\(r.layersKept)", csvNumber(r.train), csvNumber(r.test), csvNumber(r.testLow),
                    csvNumber(r.testHigh)])
            }
        }
        try out.write("probe.csv", csv.render())
        try out.write("probe.json", json.render() + "\n")
        return Self.files
    }

    public init(models: [(name: String, rows: [Row])], json: JSONValue, modelColumn: Bool) {
        self.models = models
        self.json = json
        self.modelColumn = modelColumn
    }

    /// A report folder's probe.csv (the numbers) and probe.json (names and metadata, optional).
    public init(reading dir: String) throws {
        let src = ReportFolder(dir: dir)
        let t = try src.csv("probe.csv", columns: ["layers_kept", "train_accuracy", "test_accuracy"])
        let p = src.path("probe.csv")
        json = try src.json("probe.json") ?? .object([])
        setup = json["setup"].flatMap { try? ProbeSetup(json: $0) }
        if let tr = json["images_used"]?["train"]?.intValue,
            let te = json["images_used"]?["test"]?.intValue { imagesUsed = (tr, te) }
        chance = json["chance_accuracy"]?.doubleValue
        modelColumn = t.column("model") != nil
        // A single-model CSV has no model column: the name comes from the JSON.
        let jsonNames = json["results"]?.arrayValue?.compactMap { $0["model"]?.stringValue } ?? []
        var order: [String] = [], rows: [String: [Row]] = [:]
        for r in 0..<t.rows.count {
            let name = modelColumn ? t.rows[r][t.column("model")!] : (jsonNames.count == 1 ? jsonNames[0] : "model")
            let k = try t.integer(r, "layers_kept", path: p)
            guard k >= 1,
                k <= 4096 else { throw CSVError(path: p, line: r + 2, reason: "layers_kept \(k) out of range") }
            if rows[name] == nil { order.append(name) }
            var row = Row(
                layersKept: k, train: try t.number(r, "train_accuracy", path: p),
                test: try t.number(r, "test_accuracy", path: p))
            if t.column("test_accuracy_ci_low") != nil, t.column("test_accuracy_ci_high") != nil {
                (row.testLow, row.testHigh) = (
                    try t.number(r, "test_accuracy_ci_low", path: p), try t.number(r, "test_accuracy_ci_high", path: p))
            }
            rows[name, default: []].append(row)
        }
        models = order.map { ($0, rows[$0]!.sorted { $0.layersKept < $1.layersKept }) }
    }

    /// The same report with the typed record of how it was made.
    func with(setup: ProbeSetup, imagesUsed: (train: Int, test: Int), chance: Double) -> ProbeResult {
        var r = self
        (r.setup, r.imagesUsed, r.chance) = (setup, imagesUsed, chance)
        return r
    }
}
