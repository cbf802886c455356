// The command helper (load → decide → append with OCC → retry) on an
// in-memory log: retries on a lost race, its bound and its backoff, with a
// recording sleeper (nothing here sleeps).
#include "supaplane/event_store/command.hpp"

#include <gtest/gtest.h>

#include "fakes.hpp"

namespace {

using namespace supaplane;
using namespace supaplane::event_store;
using supaplane::testing::FakeEventLog;
using supaplane::testing::RecordingSleeper;

const std::string kSubject = "platform.test.a";

OutgoingEvent event_on(const std::string& subject, Expected expected, std::string body = "x") {
  OutgoingEvent e;
  e.subject = subject;
  e.expected = expected;
  e.body = std::move(body);
  return e;
}

/// A command that appends one event on `kSubject` at the last sequence it read.
struct Counting {
  int loads{0};
  int conflicts{0};
  Command<std::uint64_t, std::uint64_t> make(FakeEventLog& log) {
    Command<std::uint64_t, std::uint64_t> c;
    c.load = [this, &log](int) -> Result<std::uint64_t> {
      ++loads;
      auto msgs = log.read_subject(kSubject);
      if (!msgs) return msgs.error();
      return msgs->empty() ? 0 : msgs->back().sequence;
    };
    c.decide = [](std::uint64_t& last, int) -> Result<Decision<std::uint64_t>> {
      return Decision<std::uint64_t>::write(event_on(kSubject, Expected::at(last)));
    };
    c.appended = [](std::uint64_t&, const AppendResult& a) -> Result<std::uint64_t> {
      return a.sequence.value();
    };
    c.on_conflict = [this] { ++conflicts; };
    return c;
  }
};

/// Appends a racing writer's event before the first `n` appends of the test.
void race_first(FakeEventLog& log, int n) {
  auto left = std::make_shared<int>(n);
  auto inside = std::make_shared<bool>(false);
  log.before_append = [&log, left, inside](const OutgoingEvent&) {
    if (*inside || *left == 0) return;
    --*left;
    *inside = true;
    ASSERT_TRUE(log.append(event_on(kSubject, Expected::any(), "racer")).ok());
    *inside = false;
  };
}

RetryPolicy policy(int attempts, int base = 10, int max = 40) {
  RetryPolicy p;
  p.max_attempts = attempts;
  p.backoff_base_ms = base;
  p.backoff_max_ms = max;
  p.exhausted = "keeps changing";
  return p;
}

TEST(CommandHelper, AppendsAtTheSequenceItDecidedOn) {
  FakeEventLog log;
  RecordingSleeper sleeper;
  Counting c;
  auto r = run_command(log, sleeper, policy(4), c.make(log));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, 1u);
  EXPECT_EQ(c.loads, 1);
  EXPECT_EQ(c.conflicts, 0);
  EXPECT_TRUE(sleeper.waits.empty());
}

TEST(CommandHelper, LostRaceLoadsAgainDecidesAgainAndBacksOff) {
  FakeEventLog log;
  race_first(log, 2);
  RecordingSleeper sleeper;
  Counting c;
  auto r = run_command(log, sleeper, policy(4), c.make(log));
  ASSERT_TRUE(r.ok()) << r.error().message;
  // Two racer events, two of ours lost, the third one appended after them.
  EXPECT_EQ(*r, 3u);
  EXPECT_EQ(c.loads, 3);
  EXPECT_EQ(c.conflicts, 2);
  EXPECT_EQ(log.conflicts(), 2);
  EXPECT_EQ(sleeper.waits, (std::vector<std::int64_t>{10, 20}));
  const auto msgs = log.messages();
  ASSERT_EQ(msgs.size(), 3u);
  EXPECT_EQ(msgs.back().data, "x");
}

TEST(CommandHelper, GivesUpAfterMaxAttemptsWithUnavailable) {
  FakeEventLog log;
  race_first(log, 100);
  RecordingSleeper sleeper;
  Counting c;
  auto r = run_command(log, sleeper, policy(5), c.make(log));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::unavailable);
  EXPECT_EQ(r.error().message, "keeps changing");
  EXPECT_EQ(c.loads, 5);
  EXPECT_EQ(c.conflicts, 5);
  // No wait after the last attempt; capped at the maximum.
  EXPECT_EQ(sleeper.waits, (std::vector<std::int64_t>{10, 20, 40, 40}));
  for (const auto& m : log.messages()) EXPECT_EQ(m.data, "racer");
}

TEST(CommandHelper, WithoutExhaustedMessageTheConflictItselfIsReturned) {
  FakeEventLog log;
  race_first(log, 1);
  RecordingSleeper sleeper;
  Counting c;
  auto p = policy(1);
  p.exhausted.clear();
  auto r = run_command(log, sleeper, p, c.make(log));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::conflict);
  EXPECT_TRUE(sleeper.waits.empty());
}

TEST(CommandHelper, OtherErrorsAreNotRetried) {
  FakeEventLog log;
  RecordingSleeper sleeper;
  Counting c;
  auto cmd = c.make(log);
  cmd.decide = [](std::uint64_t&, int) -> Result<Decision<std::uint64_t>> {
    return make_error(errc::failed_precondition, "no");
  };
  auto r = run_command(log, sleeper, policy(4), cmd);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::failed_precondition);
  EXPECT_EQ(c.loads, 1);
  EXPECT_TRUE(log.messages().empty());
}

TEST(CommandHelper, ConflictFromInsideTheDecisionIsALostRace) {
  FakeEventLog log;
  RecordingSleeper sleeper;
  Counting c;
  auto cmd = c.make(log);
  auto plain = cmd.decide;
  cmd.decide = [plain](std::uint64_t& last, int attempt) -> Result<Decision<std::uint64_t>> {
    if (attempt == 0) return make_error(errc::conflict, "an intermediate append lost");
    return plain(last, attempt);
  };
  auto r = run_command(log, sleeper, policy(4), cmd);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(c.loads, 2);
  EXPECT_EQ(c.conflicts, 1);
}

TEST(CommandHelper, DoneAppendsNothingAndReloadReadsAgain) {
  FakeEventLog log;
  RecordingSleeper sleeper;
  Counting c;
  auto cmd = c.make(log);
  cmd.decide = [](std::uint64_t&, int attempt) -> Result<Decision<std::uint64_t>> {
    if (attempt == 0) return Decision<std::uint64_t>::reload();
    return Decision<std::uint64_t>::finish(42);
  };
  auto r = run_command(log, sleeper, policy(4), cmd);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 42u);
  EXPECT_EQ(c.loads, 2);
  EXPECT_EQ(c.conflicts, 0);
  EXPECT_TRUE(sleeper.waits.empty());  // a reload is no lost race: no backoff
  EXPECT_TRUE(log.messages().empty());
}

TEST(CommandHelper, StoppingSleeperEndsTheRetries) {
  FakeEventLog log;
  race_first(log, 100);
  RecordingSleeper sleeper;
  sleeper.stop_after = 1;
  Counting c;
  auto r = run_command(log, sleeper, policy(16), c.make(log));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::unavailable);
  EXPECT_EQ(c.loads, 1);
}

TEST(CommandHelper, BackoffDoublesUpToItsMaximum) {
  RetryPolicy p = policy(10, 5, 100);
  EXPECT_EQ(command_backoff_ms(p, 1), 5);
  EXPECT_EQ(command_backoff_ms(p, 2), 10);
  EXPECT_EQ(command_backoff_ms(p, 5), 80);
  EXPECT_EQ(command_backoff_ms(p, 6), 100);
  EXPECT_EQ(command_backoff_ms(p, 60), 100);
  EXPECT_EQ(command_backoff_ms(policy(3, 0, 0), 3), 0);
}

TEST(CommandHelperAsync, LostRacesAreRetriedOnTheExecutorAndBounded) {
  FakeEventLog log;
  race_first(log, 2);
  Counting c;
  int posted = 0;
  Executor inline_executor = [&posted](std::function<void()> f) {
    ++posted;
    f();
  };
  int calls = 0;
  Result<std::uint64_t> got = make_error(errc::internal, "not called");
  run_command_async<std::uint64_t, std::uint64_t>(
      log, inline_executor, policy(4), c.make(log),
      [&](Result<std::uint64_t> r) {
        ++calls;
        got = std::move(r);
      },
      std::uint64_t{0});
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, 3u);
  EXPECT_EQ(c.conflicts, 2);
  EXPECT_EQ(posted, 2);  // the first attempt decided on the hint, inline

  FakeEventLog busy;
  race_first(busy, 100);
  Counting d;
  calls = 0;
  run_command_async<std::uint64_t, std::uint64_t>(busy, inline_executor, policy(3), d.make(busy),
                                                  [&](Result<std::uint64_t> r) {
                                                    ++calls;
                                                    got = std::move(r);
                                                  });
  EXPECT_EQ(calls, 1);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().code, errc::unavailable);
  EXPECT_EQ(d.loads, 3);
}

}  // namespace
