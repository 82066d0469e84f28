#include "server/log.h"

#include "gtest/gtest.h"

namespace bursar::server {
namespace {

TEST(LogTest, OneLineWithQuotedValuesWhereNeeded) {
  EXPECT_EQ(FormatLogLine("2026-11-22T15:00:00.000000Z", LogLevel::kInfo,
                          "serving", {{"addr", "127.0.0.1:8081"}}),
            "ts=2026-11-22T15:00:00.000000Z level=info msg=serving "
            "addr=127.0.0.1:8081");
  EXPECT_EQ(FormatLogLine("t", LogLevel::kError, "cannot open",
                          {{"error", "a \"b\"=c\nd"}, {"empty", ""}}),
            "ts=t level=error msg=\"cannot open\" "
            "error=\"a \\\"b\\\"=c\\nd\" empty=\"\"");
}

}  // namespace
}  // namespace bursar::server
