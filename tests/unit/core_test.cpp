#include <gtest/gtest.h>

#include "supaplane/config/config.hpp"
#include "supaplane/core/ids.hpp"
#include "supaplane/core/time.hpp"
#include "supaplane/event_store/consumer.hpp"
#include "supaplane/projection/redis.hpp"

namespace {
using namespace supaplane;

TEST(Ids, TenantRefIsTwentyLowercaseLetters) {
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(TenantRef::valid(ids::random_tenant_ref().str()));
  EXPECT_FALSE(TenantRef::valid("abc"));
  EXPECT_FALSE(TenantRef::valid("ABCDEFGHIJKLMNOPQRST"));
  EXPECT_FALSE(TenantRef::valid("abcdefghijklmnopqrs1"));
  EXPECT_FALSE(TenantRef::valid("abcdefghijklmnopqrstu"));
  EXPECT_FALSE(TenantRef::valid("abcdefghij.lmnopqrst"));
  EXPECT_EQ(ids::parse_tenant_ref("nope").error().field, "ref");
}

TEST(Ids, RefForRequestIsDeterministicPerAccount) {
  const auto a = ids::tenant_ref_for("acct_1", "req-1");
  EXPECT_EQ(a, ids::tenant_ref_for("acct_1", "req-1"));
  EXPECT_NE(a, ids::tenant_ref_for("acct_2", "req-1"));
  EXPECT_NE(a, ids::tenant_ref_for("acct_1", "req-2"));
  EXPECT_TRUE(TenantRef::valid(a.str()));
}

TEST(Ids, AccountAndRequestIds) {
  const auto id = ids::new_account_id();
  EXPECT_TRUE(ids::valid_account_id(id)) << id;
  EXPECT_FALSE(ids::valid_account_id("acct_x"));
  EXPECT_FALSE(ids::valid_account_id("user_aaaaaaaaaaaaaaaaaaaa"));
  EXPECT_TRUE(ids::valid_request_id("create-1:abc_2.x"));
  EXPECT_FALSE(ids::valid_request_id(""));
  EXPECT_FALSE(ids::valid_request_id("has space"));
  EXPECT_FALSE(ids::valid_request_id(std::string(129, 'a')));
  EXPECT_EQ(ids::random_hex_id().size(), 32u);
}

TEST(Time, Rfc3339RoundTrip) {
  EXPECT_EQ(parse_rfc3339_ms("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_rfc3339_ms("2026-11-22T10:00:00.123Z"), 1795341600123);
  EXPECT_EQ(parse_rfc3339_ms("2026-11-22T12:00:00+02:00"), 1795341600000);
  EXPECT_EQ(format_rfc3339_ms(1795341600123), "2026-11-22T10:00:00.123Z");
  EXPECT_FALSE(parse_rfc3339_ms("yesterday"));
  EXPECT_FALSE(parse_rfc3339_ms("2026-13-01T00:00:00Z"));
  EXPECT_FALSE(parse_rfc3339_ms("2026-11-22T10:00:00"));
}

TEST(Config, HostPort) {
  auto a = config::parse_host_port("127.0.0.1:9101");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 9101);
  EXPECT_EQ(config::parse_host_port(":80")->host, "0.0.0.0");
  EXPECT_FALSE(config::parse_host_port("nohost").ok());
  EXPECT_FALSE(config::parse_host_port("h:99999").ok());
  EXPECT_FALSE(config::parse_host_port("h:8a").ok());
}

TEST(Config, RedisUrl) {
  auto a = projection::parse_redis_url("redis://10.0.0.1:6380/2");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "10.0.0.1");
  EXPECT_EQ(a->port, 6380);
  EXPECT_EQ(a->db, 2);
  EXPECT_FALSE(projection::parse_redis_url("redis://h:port").ok());
  EXPECT_TRUE(a->user.empty());
  EXPECT_TRUE(a->password.empty());
}

TEST(Config, RedisUrlCredentialsAreDecodedAndNeverDescribed) {
  auto a = projection::parse_redis_url("redis://router-sync:p%40ss:w/rd@redis:6379/1");
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->user, "router-sync");
  EXPECT_EQ(a->password, "p@ss:w/rd");
  EXPECT_EQ(a->host, "redis");
  EXPECT_EQ(a->port, 6379);
  EXPECT_EQ(a->db, 1);
  EXPECT_EQ(a->describe(), "redis:6379 as router-sync");
  // A password alone is requirepass (the default user).
  auto b = projection::parse_redis_url("redis://:secret@h:1");
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(b->user.empty());
  EXPECT_EQ(b->password, "secret");
  // A user without a password, a broken escape: refused, password not repeated.
  auto no_pw = projection::parse_redis_url("redis://s3cret@h:1");
  ASSERT_FALSE(no_pw.ok());
  EXPECT_EQ(no_pw.error().message.find("s3cret"), std::string::npos) << no_pw.error().message;
  auto bad = projection::parse_redis_url("redis://api:s3cr%zzet@h:1");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message.find("s3cr"), std::string::npos) << bad.error().message;
  EXPECT_FALSE(projection::parse_redis_url("redis://api:x%4@h:1").ok());
}

TEST(Consumer, BackoffDoublesUpToTheCap) {
  using event_store::ConsumerRunner;
  EXPECT_EQ(ConsumerRunner::backoff_ms(1, 100, 30000), 100);
  EXPECT_EQ(ConsumerRunner::backoff_ms(2, 100, 30000), 200);
  EXPECT_EQ(ConsumerRunner::backoff_ms(4, 100, 30000), 800);
  EXPECT_EQ(ConsumerRunner::backoff_ms(40, 100, 30000), 30000);
}

}  // namespace
