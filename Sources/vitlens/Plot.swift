import ArgumentParser
import Foundation
import Render

struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Redraw a report's figures and index.html from its CSV/JSON, without recomputing anything.",
        discussion: """
        Reads cka.csv, attention.csv (+ attention_box.csv) or probe.csv and the report's JSON, and
        writes the PNG/SVG figures and index.html again — into the same folder by default, each
        file replaced atomically. For restyling: --vmin/--vmax, --title, --scale, --compare.
        """)

    @Argument(help: "A report folder written by vitlens cka, attention, probe or merge.")
    var dir: String
    @Option(help: "Write the figures here instead of into DIR.")
    var out: String?
    @Option(help: "Title of the figures (default: from the report).")
    var title: String?
    @Option(help: "An attention report folder to overlay in a second colour.")
    var compare: String?
    @OptionGroup var figures: FigureOptions
    @OptionGroup var range: ColorRangeOptions
    @Flag(help: "No summary line.")
    var quiet = false

    func run() throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw ReportError("\(dir): no such report folder")
        }
        if let compare {
            guard FileManager.default.fileExists(atPath: compare + "/attention.csv") else {
                throw ReportError("--compare \(compare): no attention.csv there")
            }
        }
        let style = FigureStyle(scale: figures.scale, vmin: range.vmin, vmax: range.vmax, title: title)
        let outDir = try OutputDirectory(out ?? dir)
        defer { outDir.discard() }
        let files = try ReportFigures.render(sourceDir: dir, out: outDir, style: style, compareDir: compare)
        try outDir.commit()
        if !quiet { FileHandle.standardError.write(Data("wrote \(outDir.finalPath)/{\(files.joined(separator: ", "))}\n".utf8)) }
    }
}
