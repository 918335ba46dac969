"""The top of the compiler: build a plan from a traced program, and run it (with autograd)."""
