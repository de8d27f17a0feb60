"""Code shipped inside every Bento (the generated service and its ``modelops_runtime``
package). Imports nothing from the rest of ``reconciler``: it runs without it."""
