#include <gtest/gtest.h>

#include "supaplane/auth/password.hpp"
#include "supaplane/auth/token.hpp"

namespace {
using namespace supaplane;

class FixedClock : public Clock {
 public:
  std::int64_t now = 1'800'000'000'000;
  std::int64_t now_unix_ms() const override { return now; }
};

const std::string kSecret(40, 's');

TEST(Password, HashVerifies) {
  auto h = auth::hash_password("correct horse");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->rfind("$argon2id$", 0), 0u);
  EXPECT_TRUE(auth::verify_password("correct horse", *h));
  EXPECT_FALSE(auth::verify_password("wrong horse", *h));
}

TEST(Password, Validation) {
  EXPECT_FALSE(auth::validate_password("short").ok());
  EXPECT_FALSE(auth::validate_password(std::string(129, 'x')).ok());
  EXPECT_TRUE(auth::validate_password("long enough").ok());
  EXPECT_TRUE(auth::validate_email("a@b.io").ok());
  for (const char* bad : {"", "a", "a@b", "@b.io", "a@@b.io", "a b@c.io", "a@.io", "a@b.io."})
    EXPECT_EQ(auth::validate_email(bad).error().field, "email") << bad;
}

TEST(Token, IssueAndVerify) {
  FixedClock clock;
  auth::TokenService ts(kSecret, clock);
  auto t = ts.issue({"acct_aaaaaaaaaaaaaaaaaaaa", auth::Role::admin});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->expires_at_unix_ms, clock.now + 3600 * 1000);
  auto p = ts.verify(t->token);
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->account_id, "acct_aaaaaaaaaaaaaaaaaaaa");
  EXPECT_TRUE(p->is_admin());
}

TEST(Token, ExpiredForgedAndForeignAreRejected) {
  FixedClock clock;
  auth::TokenService ts(kSecret, clock);
  const auto tok = ts.issue({"acct_aaaaaaaaaaaaaaaaaaaa", auth::Role::customer})->token;
  clock.now += 3601 * 1000;
  EXPECT_EQ(ts.verify(tok).error().code, errc::unauthenticated);
  clock.now -= 3601 * 1000;
  auth::TokenService other(std::string(40, 'o'), clock);
  EXPECT_EQ(other.verify(tok).error().code, errc::unauthenticated);
  std::string tampered = tok;
  tampered[tampered.size() / 2] = tampered[tampered.size() / 2] == 'a' ? 'b' : 'a';
  EXPECT_FALSE(ts.verify(tampered).ok());
  // alg "none" with the same claims
  const std::string none =
      "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."
      "eyJzdWIiOiJhY2N0X2FhYWFhYWFhYWFhYWFhYWFhYWFhIiwicm9sZSI6ImFkbWluIiwiaXNzIjoic3VwYXBsYW5lIiwi"
      "ZXhwIjo5OTk5OTk5OTk5fQ.";
  EXPECT_FALSE(ts.verify(none).ok());
  EXPECT_FALSE(ts.verify("").ok());
  EXPECT_FALSE(ts.verify("garbage").ok());
}

}  // namespace
