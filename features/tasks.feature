Feature: Tasks on the User API Gateway

  Scenario: A prompt task is accepted as queued and read back by id or name
    Given two fresh users "ann" and "ben"
    When "ann" creates the task "Summarise the release notes please"
    Then the task is queued with the name "summarise-the-release-notes"
    And "ann" can read the task by id and by name
    And "ann" sees the task in their list and "ben" does not

  Scenario: Another user's task is a 404, and an admin sees it
    Given two fresh users "cat" and "dan"
    When "cat" creates the task "private work"
    Then "dan" gets 404 for the task, its result and its cancel
    And the admin can read the task

  Scenario: Unknown JSON fields are refused
    Given two fresh users "eve" and "fay"
    When "eve" posts a task with the unknown field "priority"
    Then the status is 400
    And the problem names the field "priority"

  Scenario: A body over the limit is refused and nothing is written
    Given two fresh users "gus" and "hal"
    When "gus" posts a task body of 5 MiB
    Then the status is 413
    And "gus" has no tasks

  Scenario: An attachment is uploaded with the task and can be downloaded
    Given two fresh users "ida" and "jon"
    When "ida" creates a script task with the attachment "notes.txt" containing "hello attachment"
    Then "ida" downloads the attachment "notes.txt" and gets "hello attachment"
    And "jon" gets 404 for the task, its result and its cancel

  Scenario: The CLI round trip
    Given a CLI user with an empty configuration
    When I run the CLI "task list"
    Then the CLI exits with 3
    When I run the CLI "auth login -u admin --password-stdin" with the admin password on stdin
    Then the CLI succeeds
    When I run the CLI "-o json task create -p hello-from-the-cli"
    Then the CLI succeeds
    And its output is one JSON task
    When I run the CLI "task list"
    Then its output lists the task
    When I run the CLI "-o json task get" on the last task
    Then the CLI succeeds
    When I run the CLI "-o json task result" on the last task
    Then the CLI succeeds
    And its output is one JSON value with "jobs"
    When I run the CLI "auth logout"
    Then the CLI succeeds
    When I run the CLI "auth whoami"
    Then the CLI exits with 3
