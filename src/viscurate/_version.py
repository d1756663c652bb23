"""viscurate's version, in a module that imports nothing, so any layer may name it without importing the
package root (which imports the Dataset)."""

__version__ = "0.1.0"
