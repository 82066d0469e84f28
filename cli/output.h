#ifndef BURSAR_CLI_OUTPUT_H_
#define BURSAR_CLI_OUTPUT_H_

// How bursarctl shows things to people (aligned tables, key/value blocks,
// money as "$12.50") and to scripts (the response message as JSON). Pure
// functions of their inputs; nothing here prints.

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/map.h"
#include "google/protobuf/message.h"
#include "google/protobuf/repeated_field.h"

namespace bursar::cli {

// A table of text cells with aligned columns: a header row, then one line
// per row, columns separated by two spaces, no trailing spaces. Widths count
// UTF-8 code points, so non-ASCII label values keep columns aligned.
class Table {
 public:
  enum class Align { kLeft, kRight };

  explicit Table(std::vector<std::string> headers);

  // Right-aligns a column (for amounts and counts). Columns are left-aligned
  // by default.
  void AlignRight(size_t column);

  // Adds a row. Missing trailing cells are empty; extra cells are dropped.
  void AddRow(std::vector<std::string> cells);

  bool empty() const { return rows_.empty(); }

  // The header line and every row, each ending in '\n'.
  std::string Render() const;

 private:
  std::vector<std::string> headers_;
  std::vector<Align> align_;
  std::vector<std::vector<std::string>> rows_;
};

// Lines of "key  value" with the values aligned, each line ending in '\n',
// each indented by `indent` spaces.
std::string RenderKeyValues(
    const std::vector<std::pair<std::string, std::string>>& lines,
    int indent = 0);

// Words of `text` filled into lines of at most `width` columns (a word
// longer than that gets a line of its own); no line ends in '\n'.
std::vector<std::string> WrapText(absl::string_view text, size_t width);

// Like RenderKeyValues, with each value wrapped to fit `width` columns and
// its continuation lines aligned under it.
std::string RenderWrappedKeyValues(
    const std::vector<std::pair<std::string, std::string>>& lines, int indent,
    size_t width);

// Nano-USD as a dollar amount: 12500000000 -> "$12.50", 18400000 ->
// "$0.0184", -1500 -> "-$0.0000015". Exact (policy::FormatUsdNanos).
std::string FormatUsd(int64_t nanos);

// The text, or "-" when it is empty (for table cells).
std::string OrDash(absl::string_view text);

// Labels or a selector as "k=v,k2=v2", sorted by key; "" when empty.
std::string FormatLabels(const std::map<std::string, std::string>& labels);
std::string FormatLabels(
    const google::protobuf::Map<std::string, std::string>& labels);

// Alert thresholds as percentages: {0.85, 1} -> "85%, 100%".
std::string FormatThresholds(
    const google::protobuf::RepeatedField<double>& thresholds);

// The value name of a proto enum without its type prefix, lower case:
// ("PERIOD_", "PERIOD_MONTH") -> "month".
std::string EnumWord(absl::string_view prefix, absl::string_view value_name);

// The message as proto3 JSON (field names as in the .proto file, fields at
// their default value included, int64 as strings), indented, ending in '\n'.
absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message);

}  // namespace bursar::cli

#endif  // BURSAR_CLI_OUTPUT_H_
