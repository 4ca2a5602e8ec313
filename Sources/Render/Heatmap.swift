import Foundation

/// A layer-by-layer similarity matrix drawn as mae-lite draws CKA: rows (model A) on the y axis
/// with layer 0 at the bottom, columns (model B) on the x axis, magma on [vmin, vmax], colour bar.
public struct Heatmap {
    /// values[i][j]: row i (bottom to top), column j (left to right). NaN = undefined.
    public var values: [[Double]]
    public var rowTitle: String
    public var columnTitle: String
    public var title: String
    public var subtitle: String
    public var colorbarTitle = "CKA"
    public var vmin = 0.0
    public var vmax = 1.0

    public init(values: [[Double]], rowTitle: String, columnTitle: String, title: String, subtitle: String) {
        self.values = values
        self.rowTitle = rowTitle
        self.columnTitle = columnTitle
        self.title = title
        self.subtitle = subtitle
    }

    public var rows: Int { values.count }
    public var columns: Int { values.first?.count ?? 0 }

    /// (row, column) of every NaN cell, row-major.
    public var undefinedCells: [(Int, Int)] {
        var out: [(Int, Int)] = []
        for (i, r) in values.enumerated() { for (j, v) in r.enumerated() where v.isNaN { out.append((i, j)) } }
        return out
    }

    /// Where the cells sit: the plot square's left, top and side, in figure pixels.
    public static let plotLeft = 100.0, plotTop = 80.0, plotSide = 500.0

    /// The figure-space rectangle of cell (i, j): x0, y0 (top), x1, y1.
    public func cellRect(_ i: Int, _ j: Int) -> (Double, Double, Double, Double) {
        let cw = Heatmap.plotSide / Double(columns), ch = Heatmap.plotSide / Double(rows)
        let x0 = Heatmap.plotLeft + Double(j) * cw, y1 = Heatmap.plotTop + Heatmap.plotSide - Double(i) * ch
        return (x0, y1 - ch, x0 + cw, y1)
    }

    /// Ticks for every layer, every 3rd when deeper than 16.
    static func tickIndices(_ n: Int) -> [Int] { Array(stride(from: 0, to: n, by: n > 16 ? 3 : 1)) }

    public func figure() -> Figure {
        let left = Heatmap.plotLeft, top = Heatmap.plotTop, side = Heatmap.plotSide
        let bottom = top + side, right = left + side
        let undefined = undefinedCells
        var fig = Figure(width: 820, height: undefined.isEmpty ? 690 : 715, title: title)
        fig.fittedText(title, left + side / 2, 34, size: 17, anchor: .middle)
        fig.fittedText(subtitle, left + side / 2, 57, size: 12.5, color: Color(hex: 0x555555), anchor: .middle)

        for i in 0..<rows {
            for j in 0..<columns {
                let (x0, y0, x1, y1) = cellRect(i, j)
                if let c = Magma.color(values[i][j], vmin: vmin, vmax: vmax) {
                    fig.rect(x0, y0, x1, y1, fill: c)
                } else {
                    fig.rect(x0, y0, x1, y1, fill: Magma.undefined)
                    fig.line([(x0, y1), (x1, y0)], .white, width: 1.2)
                }
            }
        }
        fig.rect(left, top, right, bottom, stroke: .axis, lineWidth: 1)

        // Ticks and labels: rows on the left (layer 0 at the bottom), columns below.
        for i in Heatmap.tickIndices(rows) {
            let (_, y0, _, y1) = cellRect(i, 0)
            let y = (y0 + y1) / 2
            fig.rect(left - 5, y - 0.5, left, y + 0.5, fill: .axis)
            fig.text("\(i)", left - 9, y + 4.5, size: 12.5, anchor: .end)
        }
        for j in Heatmap.tickIndices(columns) {
            let (x0, _, x1, _) = cellRect(0, j)
            let x = (x0 + x1) / 2
            fig.rect(x - 0.5, bottom, x + 0.5, bottom + 5, fill: .axis)
            fig.text("\(j)", x, bottom + 21, size: 12.5, anchor: .middle)
        }
        fig.fittedText(columnTitle, left + side / 2, bottom + 48, size: 14, maxWidth: side + 40, anchor: .middle)
        fig.fittedText(
            rowTitle, left - 52, top + side / 2, size: 14, maxWidth: side + 40, anchor: .middle, rotated: true)

        // Colour bar: 256 bands from vmin (bottom) to vmax (top).
        let cbLeft = right + 30, cbRight = cbLeft + 22
        for k in 0..<256 {
            let y1 = bottom - side * Double(k) / 256, y0 = bottom - side * Double(k + 1) / 256
            fig.rect(cbLeft, y0, cbRight, y1, fill: Magma.color((Double(k) + 0.5) / 256))
        }
        fig.rect(cbLeft, top, cbRight, bottom, stroke: .axis, lineWidth: 1)
        let ticks = niceTicks(vmin, vmax, maxCount: 6)
        let step = ticks.count > 1 ? ticks[1] - ticks[0] : 1
        for t in ticks {
            let y = bottom - side * (t - vmin) / (vmax - vmin)
            fig.rect(cbRight, y - 0.5, cbRight + 5, y + 0.5, fill: .axis)
            fig.text(tickLabel(t, step: step), cbRight + 9, y + 4.5, size: 12.5)
        }
        fig.text(colorbarTitle, cbRight + 62, top + side / 2, size: 14, anchor: .middle, rotated: true)

        if !undefined.isEmpty {
            fig.rect(left, bottom + 62, left + 14, bottom + 76, fill: Magma.undefined)
            fig.line([(left, bottom + 76), (left + 14, bottom + 62)], .white, width: 1.2)
            let shown = undefined.prefix(8).map { "(\($0.0), \($0.1))" }.joined(separator: ", ")
            let more = undefined.count > 8 ? " and \(undefined.count - 8) more" : ""
            fig.text(
                "undefined (NaN), \(undefined.count) cell\(undefined.count == 1 ? "" : "s") (row, column): "
                + "\(shown)\(more)",
                     left + 20, bottom + 74, size: 12)
        }
        return fig
    }
}
