# METADATA
# title: Retraining command is an argv list without a shell
# description: >-
#   spec.retraining.command is a non-empty list of strings run without a shell; a shell
#   anywhere in the argv (sh, env sh -c, busybox sh), or an interpreter given inline code
#   (python -c, perl -e), lets a spec value reach a shell or run unreviewed code.
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

deny contains {"msg": msg, "path": sprintf("spec.retraining.command.%d", [i])} if {
	argv(command)
	some i, word in command
	shell(word)
	msg := sprintf("retraining command runs %v (argument %d); run the program directly, without a shell", [word, i])
}

deny contains {"msg": msg, "path": sprintf("spec.retraining.command.%d", [i])} if {
	argv(command)
	some j, program in command
	interpreter(program)
	i := j + 1
	command[i] in data.organization.inline_code_flags
	msg := sprintf("retraining command runs inline code (%v %v); put the code in a script in the repository and run that", [program, command[i]])
}

interpreter(program) if basename(program) in data.organization.inline_code_interpreters

basename(program) := parts[count(parts) - 1] if parts := split(program, "/")

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
