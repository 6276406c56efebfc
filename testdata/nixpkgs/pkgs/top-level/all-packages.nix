self: with self; {
  greeter = callPackage ../tools/greeter { greeting = "hi"; };
  # The same file under a second attribute: an editor offers both.
  greeter-loud = callPackage ../tools/greeter { greeting = "HI"; };
}
