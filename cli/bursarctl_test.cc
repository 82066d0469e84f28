// Tests of bursarctl's parts that need no server: argument parsing, the
// command-line scan, and output formatting.

#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "cli/arguments.h"
#include "cli/command_line.h"
#include "cli/credentials.h"
#include "cli/output.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace bursar::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;

TEST(ParseLabelListTest, ParsesPairsAndTrimsSpaces) {
  auto labels = ParseLabelList("team=search, user = alice,expr=a=b");
  ASSERT_TRUE(labels.ok()) << labels.status();
  EXPECT_THAT(*labels, ElementsAre(Pair("expr", "a=b"), Pair("team", "search"),
                                   Pair("user", "alice")));
}

TEST(ParseLabelListTest, EmptyTextIsNoLabels) {
  auto labels = ParseLabelList("");
  ASSERT_TRUE(labels.ok());
  EXPECT_THAT(*labels, IsEmpty());
}

TEST(ParseLabelListTest, EmptyValueIsAllowed) {
  auto labels = ParseLabelList("team=");
  ASSERT_TRUE(labels.ok());
  EXPECT_THAT(*labels, ElementsAre(Pair("team", "")));
}

TEST(ParseLabelListTest, RejectsEntryWithoutValue) {
  auto labels = ParseLabelList("team=search,user");
  EXPECT_EQ(labels.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(labels.status().message(), HasSubstr("write user=VALUE"));
}

TEST(ParseLabelListTest, RejectsEmptyKey) {
  auto labels = ParseLabelList("=search");
  EXPECT_EQ(labels.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(labels.status().message(), HasSubstr("no key"));
}

TEST(ParseLabelListTest, RejectsDuplicateKey) {
  auto labels = ParseLabelList("team=a,user=b,team=c");
  EXPECT_EQ(labels.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(labels.status().message(), HasSubstr("\"team\" is given twice"));
}

TEST(ParseLabelListTest, RejectsEmptyEntry) {
  EXPECT_FALSE(ParseLabelList("a=b,,c=d").ok());
  EXPECT_FALSE(ParseLabelList("a=b,").ok());
}

TEST(ParseThresholdListTest, ParsesFractions) {
  auto thresholds = ParseThresholdList("0.5, 0.85,1");
  ASSERT_TRUE(thresholds.ok()) << thresholds.status();
  EXPECT_THAT(*thresholds, ElementsAre(0.5, 0.85, 1.0));
}

TEST(ParseThresholdListTest, EmptyTextIsTheServerDefault) {
  auto thresholds = ParseThresholdList("");
  ASSERT_TRUE(thresholds.ok());
  EXPECT_THAT(*thresholds, IsEmpty());
}

TEST(ParseThresholdListTest, RejectsValuesOutsideZeroToOne) {
  for (const char* text : {"0", "85", "1.01", "-0.5", "0.5,0"}) {
    auto thresholds = ParseThresholdList(text);
    EXPECT_EQ(thresholds.status().code(), absl::StatusCode::kInvalidArgument)
        << text;
    EXPECT_THAT(thresholds.status().message(), HasSubstr("outside (0, 1]"));
  }
}

TEST(ParseThresholdListTest, RejectsNonNumbersAndDuplicates) {
  EXPECT_THAT(ParseThresholdList("0.5,high").status().message(),
              HasSubstr("not a number"));
  EXPECT_THAT(ParseThresholdList("85%").status().message(),
              HasSubstr("not a number"));
  EXPECT_THAT(ParseThresholdList("nan").status().message(),
              HasSubstr("not a number"));
  EXPECT_THAT(ParseThresholdList("0.5,0.50").status().message(),
              HasSubstr("given twice"));
}

TEST(ParsePeriodTest, AcceptsEveryPeriodInAnyCase) {
  EXPECT_EQ(*ParsePeriod("hour"), v1::PERIOD_HOUR);
  EXPECT_EQ(*ParsePeriod("Day"), v1::PERIOD_DAY);
  EXPECT_EQ(*ParsePeriod("week"), v1::PERIOD_WEEK);
  EXPECT_EQ(*ParsePeriod("MONTH"), v1::PERIOD_MONTH);
  EXPECT_EQ(*ParsePeriod("none"), v1::PERIOD_NONE);
  EXPECT_THAT(ParsePeriod("monthly").status().message(),
              HasSubstr("hour, day, week, month or none"));
  EXPECT_FALSE(ParsePeriod("").ok());
}

TEST(ParseOutcomeTest, AcceptsEveryOutcome) {
  EXPECT_EQ(*ParseOutcome("success"), v1::OUTCOME_SUCCESS);
  EXPECT_EQ(*ParseOutcome("failure"), v1::OUTCOME_FAILURE);
  EXPECT_EQ(*ParseOutcome("retry"), v1::OUTCOME_RETRY);
  EXPECT_EQ(*ParseOutcome("Cancelled"), v1::OUTCOME_CANCELLED);
  EXPECT_FALSE(ParseOutcome("ok").ok());
}

// Flags of a small test command line: two value flags and a bool.
std::optional<FlagKind> TestFlagKind(absl::string_view name) {
  if (name == "amount" || name == "reason") return FlagKind::kValue;
  if (name == "json") return FlagKind::kBool;
  return std::nullopt;
}

TEST(ScanCommandLineTest, FindsPositionalsAndFlagsAnywhere) {
  auto scanned = ScanCommandLine({"--json", "budget", "--amount", "5", "set",
                                  "team-a", "--reason=new team"},
                                 TestFlagKind);
  ASSERT_TRUE(scanned.ok()) << scanned.status();
  EXPECT_THAT(scanned->positional, ElementsAre("budget", "set", "team-a"));
  ASSERT_EQ(scanned->flags.size(), 3);
  EXPECT_EQ(scanned->flags[0].name, "json");
  EXPECT_EQ(scanned->flags[0].value, "true");
  EXPECT_EQ(scanned->flags[1].name, "amount");
  EXPECT_EQ(scanned->flags[1].value, "5");
  EXPECT_EQ(scanned->flags[2].value, "new team");
  EXPECT_FALSE(scanned->help);
}

TEST(ScanCommandLineTest, BoolFlagsNeverTakeTheNextArgument) {
  auto scanned = ScanCommandLine({"--json", "list", "--nojson", "-json=false"},
                                 TestFlagKind);
  ASSERT_TRUE(scanned.ok()) << scanned.status();
  EXPECT_THAT(scanned->positional, ElementsAre("list"));
  ASSERT_EQ(scanned->flags.size(), 3);
  EXPECT_EQ(scanned->flags[1].name, "json");
  EXPECT_EQ(scanned->flags[1].value, "false");
  EXPECT_EQ(scanned->flags[2].value, "false");
}

TEST(ScanCommandLineTest, DoubleDashEndsFlags) {
  auto scanned = ScanCommandLine({"get", "--", "--json", "-"}, TestFlagKind);
  ASSERT_TRUE(scanned.ok());
  EXPECT_THAT(scanned->positional, ElementsAre("get", "--json", "-"));
  EXPECT_THAT(scanned->flags, IsEmpty());
}

TEST(ScanCommandLineTest, SeesHelpAnywhere) {
  for (const char* help : {"--help", "-h", "-help", "--helpfull"}) {
    auto scanned = ScanCommandLine({"budget", help, "set"}, TestFlagKind);
    ASSERT_TRUE(scanned.ok());
    EXPECT_TRUE(scanned->help) << help;
    EXPECT_THAT(scanned->positional, ElementsAre("budget", "set"));
  }
}

TEST(ScanCommandLineTest, RejectsUnknownFlags) {
  auto scanned = ScanCommandLine({"list", "--colour=red"}, TestFlagKind);
  EXPECT_EQ(scanned.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(scanned.status().message(), HasSubstr("unknown flag --colour"));
}

TEST(ScanCommandLineTest, RejectsValueFlagWithoutValue) {
  EXPECT_THAT(
      ScanCommandLine({"set", "--amount"}, TestFlagKind).status().message(),
      HasSubstr("--amount needs a value"));
  // A forgotten value is not filled in by the next flag.
  EXPECT_THAT(ScanCommandLine({"set", "--reason", "--json"}, TestFlagKind)
                  .status()
                  .message(),
              HasSubstr("--reason needs a value"));
  EXPECT_THAT(ScanCommandLine({"set", "--amount", "--", "x"}, TestFlagKind)
                  .status()
                  .message(),
              HasSubstr("--amount needs a value"));
  EXPECT_THAT(
      ScanCommandLine({"set", "--noamount"}, TestFlagKind).status().message(),
      HasSubstr("--noamount"));
}

TEST(ScanCommandLineTest, ValueMayStartWithDashWhenNotAFlag) {
  auto scanned =
      ScanCommandLine({"--reason", "-x-", "--amount", "-1"}, TestFlagKind);
  ASSERT_TRUE(scanned.ok()) << scanned.status();
  EXPECT_EQ(scanned->flags[0].value, "-x-");
  EXPECT_EQ(scanned->flags[1].value, "-1");
}

TEST(TableTest, AlignsColumnsAndTrimsTrailingSpace) {
  Table table({"NAME", "AMOUNT", "NOTE"});
  table.AlignRight(1);
  table.AddRow({"team-search", "$5000.00", ""});
  table.AddRow({"u", "$5.00", "per user"});
  EXPECT_EQ(table.Render(),
            "NAME           AMOUNT  NOTE\n"
            "team-search  $5000.00\n"
            "u               $5.00  per user\n");
}

TEST(TableTest, CountsUtf8CodePointsAsOneColumn) {
  Table table({"USER", "SPENT"});
  table.AddRow({"zoë", "$1.00"});
  table.AddRow({"bob", "$2.00"});
  EXPECT_EQ(table.Render(),
            "USER  SPENT\n"
            "zoë   $1.00\n"
            "bob   $2.00\n");
}

TEST(TableTest, PadsShortRows) {
  Table table({"A", "B"});
  table.AddRow({"x"});
  EXPECT_EQ(table.Render(), "A  B\nx\n");
}

TEST(RenderKeyValuesTest, AlignsValues) {
  EXPECT_EQ(
      RenderKeyValues({{"verdict", "ALLOW"}, {"estimated cost", "$1"}}, 2),
      "  verdict         ALLOW\n"
      "  estimated cost  $1\n");
}

TEST(WrapTextTest, FillsLinesUpToTheWidth) {
  EXPECT_THAT(WrapText("one two three four", 9),
              ElementsAre("one two", "three", "four"));
  EXPECT_THAT(WrapText("averyveryverylongword x", 5),
              ElementsAre("averyveryverylongword", "x"));
  EXPECT_THAT(WrapText("", 5), ElementsAre(""));
}

TEST(RenderWrappedKeyValuesTest, AlignsContinuationLines) {
  EXPECT_EQ(RenderWrappedKeyValues(
                {{"--json", "print JSON for scripts"}, {"--x", "y"}}, 2, 24),
            "  --json  print JSON for\n"
            "          scripts\n"
            "  --x     y\n");
}

TEST(FormatUsdTest, PrintsDollarsExactly) {
  EXPECT_EQ(FormatUsd(12'500'000'000), "$12.50");
  EXPECT_EQ(FormatUsd(0), "$0.00");
  EXPECT_EQ(FormatUsd(18'400'000), "$0.0184");
  EXPECT_EQ(FormatUsd(1), "$0.000000001");
  EXPECT_EQ(FormatUsd(-1500), "-$0.0000015");
}

TEST(FormatTest, LabelsAndThresholds) {
  EXPECT_EQ(FormatLabels(std::map<std::string, std::string>{
                {"user", "bob"}, {"team", "search"}}),
            "team=search,user=bob");
  google::protobuf::RepeatedField<double> thresholds;
  thresholds.Add(0.5);
  thresholds.Add(0.85);
  thresholds.Add(1.0);
  EXPECT_EQ(FormatThresholds(thresholds), "50%, 85%, 100%");
  EXPECT_EQ(EnumWord("PERIOD_", "PERIOD_MONTH"), "month");
}

TEST(ToJsonTest, UsesProtoFieldNamesAndPrintsDefaults) {
  v1::Budget budget;
  budget.set_name("team-search");
  budget.set_amount_nanos(5'000'000'000);
  auto json = ToJson(budget);
  ASSERT_TRUE(json.ok());
  EXPECT_THAT(*json, HasSubstr("\"amount_nanos\": \"5000000000\""));
  EXPECT_THAT(*json, HasSubstr("\"per_label\": \"\""));
  EXPECT_THAT(*json, HasSubstr("\"period\": \"PERIOD_UNSPECIFIED\""));
}

}  // namespace
}  // namespace bursar::cli

namespace bursar::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(ResolveTokenTest, FlagThenFileThenEnvironment) {
  const std::string file = ::testing::TempDir() + "/bursarctl_token";
  std::ofstream(file, std::ios::trunc) << "  from-file \nsecond line\n";
  EXPECT_EQ(*ResolveToken("from-flag", "", "from-env"), "from-flag");
  EXPECT_EQ(*ResolveToken("", file, "from-env"), "from-file");
  EXPECT_EQ(*ResolveToken("", "", "from-env"), "from-env");
  EXPECT_EQ(*ResolveToken("", "", std::nullopt), "");
}

TEST(ResolveTokenTest, ErrorsNeverShowTheToken) {
  const std::string file = ::testing::TempDir() + "/bursarctl_token2";
  std::ofstream(file, std::ios::trunc) << "\n";
  const absl::Status both = ResolveToken("s3cret", file, std::nullopt).status();
  EXPECT_EQ(both.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(both.message(), HasSubstr("not both"));
  const absl::Status empty = ResolveToken("", file, std::nullopt).status();
  EXPECT_THAT(empty.message(), HasSubstr("no token on its first line"));
  const absl::Status missing =
      ResolveToken("", "/nonexistent/token", std::nullopt).status();
  EXPECT_THAT(missing.message(), HasSubstr("/nonexistent/token"));
  const absl::Status spaced =
      ResolveToken("s3cret inside", "", std::nullopt).status();
  EXPECT_EQ(spaced.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(spaced.message(), Not(HasSubstr("s3cret")));
  const absl::Status env = ResolveToken("", "", "s3cret\tx").status();
  EXPECT_THAT(env.message(), HasSubstr("$BURSAR_TOKEN"));
  EXPECT_THAT(env.message(), Not(HasSubstr("s3cret")));
}

}  // namespace
}  // namespace bursar::cli
