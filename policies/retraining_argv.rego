# METADATA
# title: Retraining command is an argv list without a shell
# description: >-
#   spec.retraining.command is a non-empty list of strings run without a shell; a shell
#   string, or an argv that starts a shell with -c, lets a spec value reach a shell.
# custom:
#   id: MDL-022
#   severity: high
#   enforcement: mandatory
#   controls: ["CWE-78", "SOC 2 CC8.1"]
#   remediation: Write the command as ["python", "train.py", "arg"], not "sh -c ...".
package modelops.retraining_argv

retraining := object.get(input, ["spec", "retraining"], null)

command := object.get(retraining, ["command"], null) if retraining != null

deny contains {"msg": msg, "path": "spec.retraining.command"} if {
	retraining != null
	not argv(command)
	msg := sprintf("retraining command must be a non-empty list of non-empty strings, got %v", [command])
}

deny contains {"msg": msg, "path": "spec.retraining.command.0"} if {
	argv(command)
	program := command[0]
	shell(program)
	msg := sprintf("retraining command starts %v; run the program directly, without a shell", [program])
}

argv(value) if {
	is_array(value)
	count(value) > 0
	every item in value {
		is_string(item)
		item != ""
	}
}

shell(program) if program in data.organization.shell_commands

shell(program) if {
	parts := split(program, "/")
	parts[count(parts) - 1] in data.organization.shell_commands
}
