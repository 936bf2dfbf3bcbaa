Feature: Tasks run in real sandbox containers on worker nodes

  Background:
    Given a CLI user with a personal API token

  Scenario: A commands-mode task completes with its real output
    When I run the CLI "task create --input-mode commands --wait" with the command "echo hello"
    Then the CLI prints exactly "hello"
    When I run the CLI "task result" on the task just created
    Then the CLI prints exactly "hello"

  Scenario: A script-mode task completes with its real output
    When I run the CLI "task create --input-mode script --wait" with the command "for i in 1 2 3; do echo line-$i; done"
    Then the CLI prints exactly "line-1\nline-2\nline-3"

  Scenario: Commands run in order and stop at the first failure
    When I create a commands task running, in order, "echo one", "false" and "echo three"
    Then the task ends "failed" with exit code 1 and stdout "one\n"

  Scenario: The sandbox is not root and has no network
    When I create a commands task with the commands "id -u; ls /sys/class/net; (curl -s -m 3 http://1.1.1.1 >/dev/null && echo online) || echo offline; touch /etc/x 2>/dev/null || echo read-only-root"
    Then the task ends "completed" with exit code 0 and stdout "65534\nlo\noffline\nread-only-root\n"

  Scenario: A job over its timeout is killed and reported
    When I create a commands task with the commands "echo started; sleep 120"
    Then the task ends "failed" with exit code -1 and stdout "started\n"
    And the job result says "timeout"

  Scenario: Oversized output is truncated at the limit with the flag set
    When I create a commands task with the commands "head -c 300000 /dev/zero | tr '\0' a; echo done >&2"
    Then the task ends "completed" with exit code 0
    And its stdout is exactly 262144 bytes and flagged truncated, and its stderr is "done\n" and not truncated

  Scenario: An attachment reaches the sandbox read-only under /job/inputs
    When I create a commands task with the attachment "data.txt" containing "from the user" and the commands "cat /job/inputs/data.txt; echo; echo x > /job/inputs/data.txt 2>/dev/null || echo read-only"
    Then the task ends "completed" with exit code 0 and stdout "from the user\nread-only\n"

  Scenario: The orchestrator and a worker in two processes work over HTTP
    Given an orchestrator and a worker started as separate processes
    When I create a commands task there with the command "echo split-$((6*7))"
    Then that task completes there with stdout "split-42\n"
