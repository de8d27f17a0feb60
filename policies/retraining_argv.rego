# METADATA
# title: Retraining command is an allowed program in an allowed form
# description: >-
#   spec.retraining.command is a non-empty list of strings run without a shell, and it
#   must match the allowlist in data.organization.retraining_commands: its program is one
#   of `programs` (the name exactly, found on PATH), and its form one of `forms`: `script`
#   (the program runs a script given as a relative path in the repository, ending in .py,
#   no "..") or `module` (`-m` and a dotted module name; one of `modules` when that list
#   is not empty). Anything else (a shell, inline code behind any flag or interpreter
#   name, a wrapper such as env or nice) is refused: a list of forbidden forms always
#   missed a variant.
# custom:
#   id: MDL-022
#   severity: high
#   enforcement: mandatory
#   controls: ["CWE-78", "SOC 2 CC8.1"]
#   remediation: Write the command as ["python", "train/train.py", "arg"] or ["python", "-m", "pkg.train"].
package modelops.retraining_argv

retraining := object.get(input, ["spec", "retraining"], null)

command := object.get(retraining, ["command"], null) if retraining != null

allowlist := object.get(data.organization, "retraining_commands", {})

programs := object.get(allowlist, "programs", [])

forms := object.get(allowlist, "forms", [])

modules := object.get(allowlist, "modules", [])

deny contains {"msg": msg, "path": "spec.retraining.command"} if {
	retraining != null
	not argv(command)
	msg := sprintf("retraining command must be a non-empty list of non-empty strings, got %v", [command])
}

deny contains {"msg": msg, "path": "spec.retraining.command.0"} if {
	argv(command)
	not command[0] in programs
	msg := sprintf("retraining command runs %v, which is not an allowed program (data.organization.retraining_commands.programs: %v); run the program directly, without a shell or a wrapper", [command[0], programs])
}

deny contains {"msg": msg, "path": "spec.retraining.command.1"} if {
	argv(command)
	command[0] in programs
	not allowed_form(command)
	msg := sprintf("retraining command %v is not an allowed form (%v): a script in the repository (%v path/to/train.py ...) or a module (%v -m package.module ...); no inline code, no interpreter flags", [command, forms, command[0], command[0]])
}

allowed_form(cmd) if {
	"script" in forms
	count(cmd) >= 2
	script(cmd[1])
}

allowed_form(cmd) if {
	"module" in forms
	count(cmd) >= 3
	cmd[1] == "-m"
	regex.match(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`, cmd[2])
	module_allowed(cmd[2])
}

module_allowed(_) if count(modules) == 0

module_allowed(name) if name in modules

# a relative path of plain segments ending in .py: no option, no absolute path, no ".."
script(path) if {
	regex.match(`^[A-Za-z0-9_][A-Za-z0-9_./-]*\.py$`, path)
	not contains(concat("", ["/", path, "/"]), "/../")
	not contains(concat("", ["/", path, "/"]), "/./")
	not contains(path, "//")
}

argv(value) if {
	is_array(value)
	count(value) > 0
	every item in value {
		is_string(item)
		item != ""
	}
}
