Feature: The system comes up on embedded defaults and tells the truth about itself

  Scenario: Liveness answers on every listener
    When I GET "/healthz" on every listener
    Then each answers 200 with the body "ok"

  Scenario: Once started, readiness says ready in text and in JSON, with every check passing
    Given the system has finished starting
    When I GET "/readyz" on the gateway
    Then the status is 200
    And the body starts with "ready"
    When I GET "/readyz" on the gateway as JSON
    Then the JSON field "status" is "ready"
    And the readiness check "database" is ok
    And the readiness check "pma" is ok

  Scenario: Every error is problem+json with the request id
    When I GET "/v1/does-not-exist" on the gateway with request id "feat-1"
    Then the status is 404
    And the response is a problem of type "not_found" with instance "feat-1"

  Scenario: A trailing slash is a different path
    When I GET "/healthz/" on the gateway
    Then the status is 404

  Scenario: The OpenAPI document is served
    When I GET "/schema/openapi.json" on the gateway
    Then the status is 200

  Scenario: Every migration is applied and can be rolled back and re-applied
    Given a fresh database directory
    When I run "cynode db migrate" there
    And I run "cynode -o json db status" there
    Then every migration is listed as applied
    When I run "cynode db rollback -y" there
    Then the last migration is no longer applied
    When I run "cynode db migrate" there
    Then every migration is listed as applied

  Scenario: A bad config stops startup with exit code 2 and names the key
    Given a server config file containing "[gateway]\nlisten_port = 1"
    When I run "cynode serve --role orchestrator" with that config
    Then the exit code is 2
    And stderr names "gateway.listen_port: unknown key"
