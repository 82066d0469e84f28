#include "cli/output.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "google/protobuf/util/json_util.h"
#include "policy/money.h"

namespace bursar::cli {
namespace {

// Display width of UTF-8 text: its code points (continuation bytes are not
// counted).
size_t Width(absl::string_view text) {
  return std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  });
}

void AppendPadded(std::string* out, absl::string_view cell, size_t width,
                  Table::Align align) {
  const std::string padding(width - std::min(width, Width(cell)), ' ');
  if (align == Table::Align::kRight) {
    absl::StrAppend(out, padding, cell);
  } else {
    absl::StrAppend(out, cell, padding);
  }
}

}  // namespace

Table::Table(std::vector<std::string> headers)
    : headers_(std::move(headers)), align_(headers_.size(), Align::kLeft) {}

void Table::AlignRight(size_t column) {
  if (column < align_.size()) align_[column] = Align::kRight;
}

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  rows_.push_back(std::move(cells));
}

std::string Table::Render() const {
  std::vector<size_t> widths(headers_.size());
  for (size_t c = 0; c < headers_.size(); ++c) {
    widths[c] = Width(headers_[c]);
    for (const std::vector<std::string>& row : rows_) {
      widths[c] = std::max(widths[c], Width(row[c]));
    }
  }
  std::string out;
  auto append_line = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t c = 0; c < cells.size(); ++c) {
      if (c > 0) line += "  ";
      AppendPadded(&line, cells[c], widths[c], align_[c]);
    }
    const size_t end = line.find_last_not_of(' ');
    line.resize(end == std::string::npos ? 0 : end + 1);
    absl::StrAppend(&out, line, "\n");
  };
  append_line(headers_);
  for (const std::vector<std::string>& row : rows_) append_line(row);
  return out;
}

std::string RenderKeyValues(
    const std::vector<std::pair<std::string, std::string>>& lines, int indent) {
  size_t width = 0;
  for (const auto& [key, value] : lines) width = std::max(width, Width(key));
  std::string out;
  for (const auto& [key, value] : lines) {
    std::string line(indent, ' ');
    AppendPadded(&line, key, width, Table::Align::kLeft);
    absl::StrAppend(&line, "  ", value);
    const size_t end = line.find_last_not_of(' ');
    line.resize(end == std::string::npos ? 0 : end + 1);
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::vector<std::string> WrapText(absl::string_view text, size_t width) {
  std::vector<std::string> lines;
  std::string line;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (!line.empty() && Width(line) + 1 + Width(word) > width) {
      lines.push_back(std::move(line));
      line.clear();
    }
    absl::StrAppend(&line, line.empty() ? "" : " ", word);
  }
  if (!line.empty() || lines.empty()) lines.push_back(std::move(line));
  return lines;
}

std::string RenderWrappedKeyValues(
    const std::vector<std::pair<std::string, std::string>>& lines, int indent,
    size_t width) {
  size_t key_width = 0;
  for (const auto& [key, value] : lines) {
    key_width = std::max(key_width, Width(key));
  }
  const size_t value_column = indent + key_width + 2;
  const size_t value_width =
      width > value_column + 20 ? width - value_column : 20;
  std::vector<std::pair<std::string, std::string>> wrapped;
  for (const auto& [key, value] : lines) {
    std::vector<std::string> parts = WrapText(value, value_width);
    for (size_t i = 0; i < parts.size(); ++i) {
      wrapped.push_back({i == 0 ? key : "", std::move(parts[i])});
    }
  }
  // Pads keys to the common width even when the widest key is wrapped away.
  std::string out;
  for (const auto& [key, value] : wrapped) {
    std::string line(indent, ' ');
    AppendPadded(&line, key, key_width, Table::Align::kLeft);
    absl::StrAppend(&line, "  ", value);
    const size_t end = line.find_last_not_of(' ');
    line.resize(end == std::string::npos ? 0 : end + 1);
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::string OrDash(absl::string_view text) {
  return text.empty() ? "-" : std::string(text);
}

std::string FormatUsd(int64_t nanos) {
  const std::string text = policy::FormatUsdNanos(nanos);
  if (absl::StartsWith(text, "-")) return absl::StrCat("-$", text.substr(1));
  return absl::StrCat("$", text);
}

std::string FormatLabels(const std::map<std::string, std::string>& labels) {
  return absl::StrJoin(labels, ",", absl::PairFormatter("="));
}

std::string FormatLabels(
    const google::protobuf::Map<std::string, std::string>& labels) {
  return FormatLabels(
      std::map<std::string, std::string>(labels.begin(), labels.end()));
}

std::string FormatThresholds(
    const google::protobuf::RepeatedField<double>& thresholds) {
  return absl::StrJoin(thresholds, ", ", [](std::string* out, double t) {
    absl::StrAppend(out, absl::StrFormat("%g%%", t * 100));
  });
}

std::string EnumWord(absl::string_view prefix, absl::string_view value_name) {
  absl::ConsumePrefix(&value_name, prefix);
  return absl::AsciiStrToLower(value_name);
}

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  const auto status =
      google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot print the response as JSON: ", status.ToString()));
  }
  if (!absl::EndsWith(json, "\n")) json += "\n";
  return json;
}

}  // namespace bursar::cli
