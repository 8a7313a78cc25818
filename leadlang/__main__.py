from leadlang.cli import main

main()
