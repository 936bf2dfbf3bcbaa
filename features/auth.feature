Feature: Local accounts, sessions and tokens on the User API Gateway

  Scenario: The admin logs in and sees who they are
    When I log in to the gateway as the admin
    Then I receive an access token and a refresh token
    And whoami with that token says "admin" with the role "admin"

  Scenario: A wrong password is refused without saying why
    When I log in to the gateway as "admin" with the password "not-the-password"
    Then the answer asks for a bearer token and reveals no reason
    When I log in to the gateway as "no-such-user" with the password "not-the-password"
    Then the answer asks for a bearer token and reveals no reason

  Scenario: Refresh rotates the tokens, and reusing a rotated refresh token ends every session
    Given a fresh user who is logged in
    When I refresh my tokens
    Then I get a new token pair whose access token works
    When I refresh again with the old refresh token
    Then the status is 401
    And my current access token no longer works
    And my current refresh token no longer works

  Scenario: Logging out kills the access token at once
    Given a fresh user who is logged in
    When I log out
    Then the status is 204
    And my current access token no longer works
    And my current refresh token no longer works

  Scenario: The eleventh failed login is refused even with the right password
    Given a fresh user
    When that user fails to log in 10 times
    Then every one of those attempts answered 401
    When that user logs in with the right password
    Then the status is 429
    And the answer says when to retry

  Scenario: Only an admin creates users, and disabling a user ends their sessions
    Given a fresh user
    When that user tries to create another user
    Then the status is 403
    When the admin disables that user
    Then the status is 200
    And that user's access token no longer works

  Scenario: A personal API token works until it is revoked
    Given a fresh user
    When that user creates a personal API token named "scripts"
    Then the personal API token authenticates as that user
    And listing tokens never shows its value
    When that user revokes the personal API token
    Then the personal API token is refused

  Scenario: An access token expires
    Given a separate orchestrator whose access tokens last 1 second
    And I am logged in there as the admin
    When the token's lifetime and the 30 second clock leeway have passed
    Then the access token is refused there with 401
